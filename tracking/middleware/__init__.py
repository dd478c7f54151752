"""Request-wide middleware, by concern: D1's requests (`d1`) and staff pages (`staff`)."""
