"""What operators watch: health, readiness, metrics and the HTTP port."""
