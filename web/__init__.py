"""The build pages people read: the builds list, one build with its timeline, its log files."""
