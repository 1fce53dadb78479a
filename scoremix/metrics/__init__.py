"""Sample-quality metrics that need nothing downloaded."""
