"""Operations: health probes, Prometheus metrics, request-id logs and the alerts operators see."""
