"""Operating Taskbench: CLI, client, migrations, database copy, seeding, the periodic sweep."""
