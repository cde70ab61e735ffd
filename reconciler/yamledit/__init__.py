"""The byte-exact YAML editor: only the changed values move."""
