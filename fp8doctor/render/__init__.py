"""Rendering of facts and findings (text, Markdown, JSON); every output is redacted."""
