"""D1's carrier codes, the names staff know them by (SPEC §2.3, plus Japan's three carriers), and
each carrier's public tracking page, used when D1 sends no `trackingUrl`."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from django.conf import settings

CARRIERS: dict[str, str] = {
    "chronopost-france": "Chronopost France",
    "dhl": "DHL Express",
    "dhl-global-mail": "DHL eCommerce",
    "deutsch-post": "Deutsche Post Mail",
    "estafeta": "Estafeta",
    "fedex": "FedEx",
    "la-poste-colissimo": "La Poste Colissimo",
    "nacex": "NACEX",
    "spanish-seur": "Spanish Seur",
    "singapore-post": "Singapore Post",
    "spain-correos-es": "Correos de España",
    "ups": "UPS",
    "usps-iv-api": "USPS Informed Visibility",
    # Japan's carriers, by the codes D1's carrier list (AfterShip's slugs, SPEC §9 row 7) uses.
    "japan-post": "Japan Post",
    "yamato": "Yamato Transport",
    "sagawa": "Sagawa Express",
}

# The carrier's public tracking page for one parcel; `{number}` is the tracking number, URL
# encoded. CARRIER_TRACKING_URLS (settings) adds carriers or replaces a template.
TRACKING_URL_TEMPLATES: dict[str, str] = {
    "chronopost-france": "https://www.chronopost.fr/tracking-no-cms/suivi-page?listeNumerosLT={number}",
    "dhl": "https://www.dhl.com/global-en/home/tracking/tracking-express.html?submit=1&tracking-id={number}",
    "dhl-global-mail": "https://www.dhl.com/global-en/home/tracking/tracking-ecommerce.html?submit=1&tracking-id={number}",
    "deutsch-post": "https://www.deutschepost.de/de/s/sendungsverfolgung.html?piececode={number}",
    "estafeta": "https://www.estafeta.com/Herramientas/Rastreo?wayBill={number}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={number}",
    "la-poste-colissimo": "https://www.laposte.fr/outils/suivre-vos-envois?code={number}",
    "nacex": "https://www.nacex.es/seguimientoDetalle.do?numero_albaran={number}",
    "spanish-seur": "https://www.seur.com/livetracking/?segOnlineIdentificador={number}",
    "singapore-post": "https://www.singpost.com/track-items?trackingid={number}",
    "spain-correos-es": "https://www.correos.es/es/es/herramientas/localizador/envios/detalle?tracking-number={number}",
    "ups": "https://www.ups.com/track?tracknum={number}",
    "usps-iv-api": "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
    "japan-post": "https://trackings.post.japanpost.jp/services/srv/search/direct?reqCodeNo1={number}&searchKind=S002&locale=ja",
    "yamato": "https://jizen.kuronekoyamato.co.jp/jizen/servlet/crjz.b.NQ0010?id={number}",
    "sagawa": "https://k2k.sagawa-exp.co.jp/p/web/okurijosearch.do?okurijoNo={number}",
}


def carrier_name(code: str) -> str:
    """The carrier's name, or its code as D1 sent it when the code is not in the list."""
    return CARRIERS.get(code, code)


def _http_url(url: str) -> str:
    """The URL if it is http(s) with a host, else "" (D1 sends it; javascript: must not link)."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def tracking_url_template(carrier: str) -> str:
    """The tracking page template of `carrier`, or "" for a carrier without one."""
    overrides = getattr(settings, "CARRIER_TRACKING_URLS", {}) or {}
    return overrides.get(carrier) or TRACKING_URL_TEMPLATES.get(carrier, "")


def tracking_url_for(carrier: str, number: str, sent_url: str = "") -> str:
    """Where staff follow the parcel: D1's `trackingUrl` when it sent a usable one, else the
    carrier's page for the tracking number, else "" (an unknown carrier or no number)."""
    sent = _http_url(sent_url)
    if sent:
        return sent
    template = tracking_url_template(carrier or "")
    number = (number or "").strip()
    if not template or not number:
        return ""
    return template.format(number=quote(number, safe=""))
