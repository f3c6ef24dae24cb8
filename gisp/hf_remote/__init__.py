"""Model code shipped inside every exported checkpoint folder (loaded with trust_remote_code).

The two modules here import only torch and transformers, never `gisp`, so that an exported
folder loads where this package is not installed. The engine imports them too, so the pruned
model it evaluates and the one a user loads are the same code.
"""
