"""Generated kernels (symflow derive)."""
