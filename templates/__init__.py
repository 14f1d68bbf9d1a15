"""The default newsletter templates, packaged with mailer."""
