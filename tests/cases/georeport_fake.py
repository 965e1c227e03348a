"""A GeoReport v2 (Open311) endpoint in memory, built from the specification's examples.

Used by ``tests/cases/test_open311.py`` and by the service's Open311 worker tests
(``tests/service/test_cases_open311.py``).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "mataro-test-key"
BASE = "https://open311.mataro.test/open311/v2/"

# The specification's example answers (GeoReport v2), with Mataró's codes where it names one.
SPEC_SERVICES = [
    {
        "service_code": "001",
        "service_name": "Cans left out 24x7",
        "description": "Garbage or recycling cans that have been left out for more than 24 hours after collection. Violators will be cited.",
        "metadata": True,
        "type": "realtime",
        "keywords": "lorem, ipsum, dolor",
        "group": "sanitation",
    },
    {
        "service_code": "002",
        "metadata": True,
        "type": "realtime",
        "keywords": "lorem, ipsum, dolor",
        "group": "street",
        "service_name": "Construction plate shifted",
        "description": "Metal construction plate covering the street or sidewalk has been moved.",
    },
]
SPEC_NOTICE = (
    "The City will inspect and require the responsible party to correct within 24 hours "
    "and/or issue a Correction Notice or Notice of Violation of the Public Works Code"
)


class FakeGeoReport:
    """A GeoReport v2 endpoint in memory: services, requests, tokens, statuses, errors."""

    def __init__(self, *, codes: set[str], use_tokens: bool = False) -> None:
        self.codes = codes
        self.use_tokens = use_tokens
        self.failures: list[tuple[int, dict[str, str]]] = []  # answers to give to the next POSTs
        self.posts: list[dict[str, str]] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str | None] = {}
        self.next_id = 638344

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/open311/v2/services.json", self.services),
                Route("/open311/v2/requests.json", self.create, methods=["POST"]),
                Route("/open311/v2/tokens/{token}.json", self.token),
                Route("/open311/v2/requests/{id}.json", self.request),
            ]
        )

    @staticmethod
    def error(code: int, description: str) -> JSONResponse:
        return JSONResponse([{"code": code, "description": description}], status_code=code)

    async def services(self, request: Request) -> Response:
        return JSONResponse(SPEC_SERVICES)

    async def create(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.posts.append(form)
        if self.failures:
            status, headers = self.failures.pop(0)
            if status >= 500:
                return Response("<h1>Internal Server Error</h1>", status, headers=headers)
            body = [{"code": status, "description": "Too many requests"}]
            return JSONResponse(body, status_code=status, headers=headers)
        if form.get("api_key") != API_KEY:
            return self.error(403, "Invalid api_key received -- can't proceed with create_request.")
        if form.get("service_code") not in self.codes:
            return self.error(
                400, f"Service code {form.get('service_code')} is not a valid service code."
            )
        if not (("lat" in form and "long" in form) or "address_string" in form):
            return self.error(400, "A location is required: lat and long, or address_string.")
        if len(form.get("description", "")) > 4000:
            return self.error(400, "description is longer than 4000 characters")
        request_id = str(self.next_id)
        self.next_id += 1
        self.statuses[request_id] = {"status": "open", "status_notes": None}
        if self.use_tokens:
            token = f"tok{request_id}"
            self.tokens[token] = None  # known once processed
            return JSONResponse([{"token": token}])
        return JSONResponse(
            [
                {
                    "service_request_id": int(request_id),
                    "service_notice": SPEC_NOTICE,
                    "account_id": None,
                }
            ]
        )

    async def token(self, request: Request) -> Response:
        token = request.path_params["token"]
        if token not in self.tokens:
            return self.error(404, f"token {token} not found")
        request_id = self.tokens[token]
        if request_id is None:
            return JSONResponse([{"token": token}])
        return JSONResponse([{"service_request_id": int(request_id), "token": token}])

    def process_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = token.removeprefix("tok")

    async def request(self, request: Request) -> Response:
        request_id = request.path_params["id"]
        if request_id not in self.statuses:
            return self.error(404, f"service request {request_id} not found")
        status = self.statuses[request_id]
        return JSONResponse(
            [
                {
                    "service_request_id": int(request_id),
                    "status": status["status"],
                    "status_notes": status["status_notes"],
                    "service_name": "Sidewalk and Curb Issues",
                    "service_code": "006",
                    "description": None,
                    "agency_responsible": None,
                    "service_notice": None,
                    "requested_datetime": "2010-04-14T06:37:38-08:00",
                    "updated_datetime": "2010-04-14T06:37:38-08:00",
                    "expected_datetime": "2010-04-15T06:37:38-08:00",
                    "address": "8TH AVE and JUDAH ST",
                    "address_id": 545483,
                    "zipcode": 94122,
                    "lat": 37.762221815,
                    "long": -122.4651145,
                    "media_url": "http://city.gov.s3.amazonaws.com/requests/media/638344.jpg",
                }
            ]
        )
