"""Dataset generation, import and splitting."""
