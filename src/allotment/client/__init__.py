"""Clients: the HTTP transport (token auth, timeouts, retries with backoff), the Placement
client the scheduler uses against a remote Placement, and the ReportClient compute hosts
use to publish their provider trees and host reports."""

from allotment.client.http import ClientTransport, HttpTransport
from allotment.client.report import ProviderSpec, ReportClient, Transport

__all__ = ["ClientTransport", "HttpTransport", "ProviderSpec", "ReportClient", "Transport"]
