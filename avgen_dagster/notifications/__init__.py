"""Telling users their content is ready: messages from templates, channels, and delivery."""
