"""Built-in domain plugins (molecules, text, images), registered through the `polyvae` entry-point
group exactly as third-party plugins are."""
