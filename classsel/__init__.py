"""classsel."""
