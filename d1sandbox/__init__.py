"""A stand-in for Thales D1 that feeds, answers and checks the portal over real HTTP."""
