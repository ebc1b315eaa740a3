"""Model families, one file each; every file registers its constructors."""
