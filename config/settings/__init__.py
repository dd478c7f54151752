"""Settings per environment: base (shared), local (embedded default), test and production."""
