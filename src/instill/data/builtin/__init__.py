"""The built-in instruction suite: seeded task families with checkers, and their splits."""
