"""What each CLI verb does; cli.py only parses and dispatches."""
