"""Section partials of the default template, one per kind."""
