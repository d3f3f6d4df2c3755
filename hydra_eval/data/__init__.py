"""Dataset readers: one module per dataset, each with the quirks of its original file layout."""
