"""The console: the web application of Distretto, served through the gateway."""
