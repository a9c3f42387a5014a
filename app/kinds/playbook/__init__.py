"""Playbook definitions: the YAML shape, its static check and its sandboxed templates."""
