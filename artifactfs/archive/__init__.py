"""Archives as directories: format detection, member scanning, persistent indexes."""
