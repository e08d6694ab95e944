"""SQL migrations, shipped inside the package as cfn._migrations (see cfn/db/migrate.py)."""
