"""Networks only; training logic lives in fastgan.train."""
