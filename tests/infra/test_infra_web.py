"""The web app on AWS: served by the API function at the API's own origin, through public routes
that are exactly the page, its assets and the sign-in routes; everything else stays behind the
JWT authorizer, and the bucket lets only the app's origin post uploads from a browser."""

from __future__ import annotations

from infra_harness import Deployment

from infra.components.api import PROXY_ROUTE
from runtime.topology import Http, function

ROUTE = "aws:apigatewayv2/route:Route"
WEB_ROUTES = {
    "GET /": "the page",
    "GET /assets/{proxy+}": "its fingerprinted scripts, styles and icons",
    "POST /auth/login": "sign-in (gives the browser its token)",
    "POST /auth/refresh": "a new token from the session cookie",
    "POST /auth/logout": "sign-out",
}
OPERATIONS_ROUTES = {
    "GET /health",
    "GET /version",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/static/{proxy+}",
}


def _routes(deployment: Deployment) -> dict[str, dict]:
    return {r.inputs["routeKey"]: r.inputs for r in deployment.of_type(ROUTE)}


def test_the_app_is_served_by_the_api_function_through_public_routes(
    deployment: Deployment,
) -> None:
    routes = _routes(deployment)
    (integration,) = deployment.of_type("aws:apigatewayv2/integration:Integration")
    (api_lambda,) = [
        f for f in deployment.of_type("aws:lambda/function:Function") if "api" in f.name
    ]
    assert integration.inputs["integrationUri"] == api_lambda.state["arn"]
    for route in WEB_ROUTES:
        assert route in routes, f"missing web route {route}"
        assert routes[route]["authorizationType"] == "NONE"
        assert "authorizerId" not in routes[route]
        assert routes[route]["target"] == f"integrations/{integration.id}"


def test_public_only_where_it_must_be(deployment: Deployment) -> None:
    routes = _routes(deployment)
    public = {key for key, inputs in routes.items() if inputs["authorizationType"] == "NONE"}
    assert public == set(WEB_ROUTES) | OPERATIONS_ROUTES
    # no public catch-all: the only greedy public paths are static asset folders, read-only
    for key in public:
        method, path = key.split(" ", 1)
        assert not key.startswith("ANY "), key
        if "{proxy+}" in path:
            assert method == "GET" and path in ("/assets/{proxy+}", "/docs/static/{proxy+}")
        if path.startswith("/auth/"):
            assert method == "POST", key
    api_fn = function("api")
    assert isinstance(api_fn.trigger, Http)
    assert set(api_fn.trigger.public_routes) == public


def test_the_api_stays_behind_the_authorizer(deployment: Deployment) -> None:
    routes = _routes(deployment)
    (authorizer,) = deployment.of_type("aws:apigatewayv2/authorizer:Authorizer")
    (pool,) = deployment.of_type("aws:cognito/userPool:UserPool")
    (client,) = deployment.of_type("aws:cognito/userPoolClient:UserPoolClient")
    proxy = routes[PROXY_ROUTE]
    assert proxy["authorizationType"] == "JWT"
    assert proxy["authorizerId"] == authorizer.id
    assert authorizer.inputs["identitySources"] == ["$request.header.Authorization"]
    assert authorizer.inputs["jwtConfiguration"]["audiences"] == [client.id]
    assert authorizer.inputs["jwtConfiguration"]["issuer"].endswith(pool.id)
    # every route that is not public is authorized by that authorizer
    for key, inputs in routes.items():
        if key not in WEB_ROUTES and key not in OPERATIONS_ROUTES:
            assert inputs["authorizationType"] == "JWT", key
            assert inputs["authorizerId"] == authorizer.id, key


def test_the_bucket_accepts_browser_uploads_from_the_apps_origin_only(
    deployment: Deployment,
) -> None:
    (api,) = deployment.of_type("aws:apigatewayv2/api:Api")
    (cors,) = deployment.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    (bucket,) = deployment.of_type("aws:s3/bucket:Bucket")
    assert cors.inputs["bucket"] == bucket.id
    (rule,) = cors.inputs["corsRules"]
    assert rule["allowedOrigins"][0] == api.state["apiEndpoint"]
    assert all("*" not in origin for origin in rule["allowedOrigins"])
    assert "POST" in rule["allowedMethods"] and "DELETE" not in rule["allowedMethods"]
    # the API itself needs no CORS for its own app (same origin), and never a wildcard
    cors_config = api.inputs.get("corsConfiguration") or {}
    assert "*" not in (cors_config.get("allowOrigins") or [])


def test_the_app_url_is_a_stack_output(deployment: Deployment) -> None:
    out = deployment.outputs
    assert out["webAppUrl"] == out["apiUrl"] + "/"
