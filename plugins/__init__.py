"""Built-in domain plugins: molecules, text and images, each registered through the `polyvae` entry-point group."""
