"""diemcau: coordinator for hybrid dialogue conferences (one hall, many connection points)."""
