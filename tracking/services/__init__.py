"""Business logic as plain functions; views, admin actions, tasks and commands call these."""
