"""The book's training configurations (YAML), loaded by name with ``tutorialreg.config.load_config``."""
