"""The index templates (data files); shipped inside the splade_os package as splade_os.mappings."""
