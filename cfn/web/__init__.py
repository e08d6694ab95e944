"""The web portal (issue 16): the seed's REST API over cfn.Project, with token auth
(docs/web.md). `cfn serve` runs it; `create_app(root)` builds it for any ASGI server."""
