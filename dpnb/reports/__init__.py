"""What reviewers read: versioned report directories (``versions``), provenance (``manifest``),
self-contained HTML (``html``, ``figures``), the index page (``index``) and the bucket roll-up
(``rollup``)."""
