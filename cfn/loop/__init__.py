"""The CFN Loop: implementers, a gate, validators reaching consensus, a product-owner decision."""
