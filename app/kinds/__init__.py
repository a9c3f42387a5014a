"""What a task kind is (agent, playbook, scenario): schema, validation, report section."""
