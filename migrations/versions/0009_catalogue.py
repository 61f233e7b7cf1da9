"""Catalogue: providers, requests, tokens, products, offers, price history, change feed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Product search lives outside the ORM (the drift check skips it, see
dispatch.models.unmanaged): SQLite gets an FTS5 table over title, brand, codes and
keywords kept in step by triggers; PostgreSQL a generated, weighted tsvector column
with a GIN index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatch.db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE catalog_products_fts USING fts5("
    "title, brand, codes, keywords, content='catalog_products', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
    "CREATE TRIGGER catalog_products_fts_insert AFTER INSERT ON catalog_products BEGIN "
    "INSERT INTO catalog_products_fts(rowid, title, brand, codes, keywords) "
    "VALUES (new.id, new.title, new.brand, new.codes, new.keywords); END",
    "CREATE TRIGGER catalog_products_fts_delete AFTER DELETE ON catalog_products BEGIN "
    "INSERT INTO catalog_products_fts(catalog_products_fts, rowid, title, brand, codes, keywords) "
    "VALUES ('delete', old.id, old.title, old.brand, old.codes, old.keywords); END",
    "CREATE TRIGGER catalog_products_fts_update "
    "AFTER UPDATE OF title, brand, codes, keywords ON catalog_products BEGIN "
    "INSERT INTO catalog_products_fts(catalog_products_fts, rowid, title, brand, codes, keywords) "
    "VALUES ('delete', old.id, old.title, old.brand, old.codes, old.keywords); "
    "INSERT INTO catalog_products_fts(rowid, title, brand, codes, keywords) "
    "VALUES (new.id, new.title, new.brand, new.codes, new.keywords); END",
]

# Title and codes weigh most, then the brand, then tags and categories. No stemming (the
# 'simple' configuration), as on SQLite, so both databases find the same products.
_WORDS = "regexp_replace({}, '[^[:alnum:]]+', ' ', 'g')"  # "DD1391-100" -> "DD1391 100"
_BRAND = "coalesce(brand, '')"
_POSTGRES_SEARCH = [
    "ALTER TABLE catalog_products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    f"setweight(to_tsvector('simple'::regconfig, {_WORDS.format('title')}), 'A') || "
    f"setweight(to_tsvector('simple'::regconfig, {_WORDS.format(_BRAND)}), 'B') || "
    f"setweight(to_tsvector('simple'::regconfig, {_WORDS.format('codes')}), 'A') || "
    f"setweight(to_tsvector('simple'::regconfig, {_WORDS.format('keywords')}), 'C')) STORED",
    "CREATE INDEX ix_catalog_products_search ON catalog_products USING gin (search_vector)",
]


def _search_objects() -> None:
    statements = _SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else _POSTGRES_SEARCH
    for statement in statements:
        op.execute(statement)
    if op.get_bind().dialect.name != "sqlite":
        _lz4_for_large_values()


def _lz4_for_large_values() -> None:
    """Raw payloads and descriptions are compressed by TOAST: lz4 where the server has it.

    pglz (the default) cost about a third of a product's insert time in the ingest
    benchmark. Servers before 14, or built without lz4, keep pglz.
    """
    bind = op.get_bind()
    with bind.begin_nested() as savepoint:
        try:
            bind.execute(
                sa.text(
                    "ALTER TABLE catalog_products ALTER COLUMN raw SET COMPRESSION lz4, "
                    "ALTER COLUMN description SET COMPRESSION lz4"
                )
            )
        except sa.exc.DBAPIError:
            savepoint.rollback()


def upgrade() -> None:
    op.create_table(
        "catalog_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("product_uid", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("offer_external_id", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('new_listing', 'price_change', 'stock_change', 'ended', 'relisted', 'removed')",
            name=op.f("ck_catalog_changes_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_changes")),
    )
    with op.batch_alter_table("catalog_changes", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_changes_created", ["created_at"], unique=False)
        batch_op.create_index("ix_catalog_changes_product", ["product_id", "id"], unique=False)

    op.create_table(
        "catalog_products",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("brand", sa.String(length=255), nullable=True),
        sa.Column("brand_key", sa.String(length=255), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=True),
        sa.Column("gtin", sa.String(length=32), nullable=True),
        sa.Column("style_code", sa.String(length=128), nullable=True),
        sa.Column("group_key", sa.String(length=160), nullable=True),
        sa.Column("release_date", sa.String(length=10), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("registration_status", sa.String(length=12), nullable=True),
        sa.Column("registration_error", sa.Text(), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=True),
        sa.Column("compare_at_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("in_stock", sa.Boolean(), nullable=False),
        sa.Column("offer_count", sa.Integer(), nullable=False),
        sa.Column("codes", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("first_seen_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'ended')", name=op.f("ck_catalog_products_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_products")),
        sa.UniqueConstraint(
            "provider", "external_id", name="uq_catalog_products_provider_external"
        ),
        sa.UniqueConstraint("uid", name=op.f("uq_catalog_products_uid")),
    )
    with op.batch_alter_table("catalog_products", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_products_brand", ["brand_key", "id"], unique=False)
        batch_op.create_index(
            "ix_catalog_products_group",
            ["group_key"],
            unique=False,
            postgresql_where=sa.text("group_key IS NOT NULL"),
            sqlite_where=sa.text("group_key IS NOT NULL"),
        )
        batch_op.create_index("ix_catalog_products_last_seen", ["last_seen_at"], unique=False)
        batch_op.create_index("ix_catalog_products_price", ["price_minor", "id"], unique=False)
        batch_op.create_index("ix_catalog_products_provider", ["provider", "id"], unique=False)
        batch_op.create_index(
            "ix_catalog_products_registration",
            ["registration_status"],
            unique=False,
            postgresql_where=sa.text("registration_status IS NOT NULL"),
            sqlite_where=sa.text("registration_status IS NOT NULL"),
        )
    _search_objects()

    op.create_table(
        "catalog_provider_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rate_limit_remaining", sa.Integer(), nullable=True),
        sa.Column("rate_headers", sa.JSON(), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_provider_requests")),
    )
    with op.batch_alter_table("catalog_provider_requests", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_provider_requests_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_catalog_provider_requests_provider_created",
            ["provider", "created_at"],
            unique=False,
        )

    op.create_table(
        "catalog_provider_tokens",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("expires_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refreshing_until", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_catalog_provider_tokens")),
    )
    op.create_table(
        "catalog_providers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("credentials", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=True),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("edited", sa.JSON(), nullable=False),
        sa.Column("next_run_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_catalog_providers")),
    )
    op.create_table(
        "catalog_offers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("sku", sa.String(length=128), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("compare_at_minor", sa.BigInteger(), nullable=True),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["catalog_products.id"],
            name=op.f("fk_catalog_offers_product_id_catalog_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_offers")),
        sa.UniqueConstraint("product_id", "external_id", name="uq_catalog_offers_product_external"),
    )
    op.create_table(
        "catalog_price_points",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("offer_external_id", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("observed_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["catalog_products.id"],
            name=op.f("fk_catalog_price_points_product_id_catalog_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_price_points")),
    )
    with op.batch_alter_table("catalog_price_points", schema=None) as batch_op:
        batch_op.create_index(
            "ix_catalog_price_points_product_observed", ["product_id", "observed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("catalog_price_points", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_price_points_product_observed")

    op.drop_table("catalog_price_points")
    op.drop_table("catalog_offers")
    op.drop_table("catalog_providers")
    op.drop_table("catalog_provider_tokens")
    with op.batch_alter_table("catalog_provider_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_provider_requests_provider_created")
        batch_op.drop_index("ix_catalog_provider_requests_created")

    op.drop_table("catalog_provider_requests")
    with op.batch_alter_table("catalog_products", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_products_registration")
        batch_op.drop_index("ix_catalog_products_provider")
        batch_op.drop_index("ix_catalog_products_price")
        batch_op.drop_index("ix_catalog_products_last_seen")
        batch_op.drop_index("ix_catalog_products_group")
        batch_op.drop_index("ix_catalog_products_brand")

    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS catalog_products_fts")
    op.drop_table("catalog_products")
    with op.batch_alter_table("catalog_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_changes_product")
        batch_op.drop_index("ix_catalog_changes_created")

    op.drop_table("catalog_changes")
