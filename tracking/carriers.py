"""D1's carrier codes and the names staff know them by (SPEC §2.3, complete as published)."""

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
}


def carrier_name(code: str) -> str:
    """The carrier's name, or its code as D1 sent it when the code is not in the list."""
    return CARRIERS.get(code, code)
