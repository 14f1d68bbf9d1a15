"""mailer: compose, check and send a newsletter edition written in Markdown."""

__version__ = "0.1.0"
