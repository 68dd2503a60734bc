"""faker.js helper names (as the Kinesis Data Generator exposes them) mapped onto Python Faker.

Each entry takes the call's arguments, checks them, and returns a function of a seeded Faker
instance. Arguments follow faker.js where Python Faker has the same idea (``lorem.words(5)``,
``commerce.price(10, 100)``); a helper without arguments rejects any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Spec = Callable[[tuple], Callable[[Any], Any]]


def _fixed(method: str, *margs: Any, **mkwargs: Any) -> Spec:
    def spec(args: tuple) -> Callable[[Any], Any]:
        if args:
            raise ValueError("takes no arguments")
        return lambda f: getattr(f, method)(*margs, **mkwargs)

    return spec


def _lambda(fn: Callable[[Any], Any]) -> Spec:
    def spec(args: tuple) -> Callable[[Any], Any]:
        if args:
            raise ValueError("takes no arguments")
        return fn

    return spec


def _count(fn: Callable[[Any, int], Any], default: int, limit: int = 1000) -> Spec:
    def spec(args: tuple) -> Callable[[Any], Any]:
        if len(args) > 1:
            raise ValueError("takes at most a count")
        n = args[0] if args else default
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= limit:
            raise ValueError(f"the count must be a whole number 0..{limit}, got {n!r}")
        return lambda f: fn(f, n)

    return spec


def _money(args: tuple) -> Callable[[Any], Any]:
    """faker.js ``commerce.price(min, max, dec, symbol)`` / ``finance.amount(...)``."""
    if len(args) > 4:
        raise ValueError("takes (min, max, decimals, symbol)")
    low = args[0] if len(args) > 0 else 1
    high = args[1] if len(args) > 1 else 1000
    dec = args[2] if len(args) > 2 else 2
    symbol = args[3] if len(args) > 3 else ""
    for v, what in ((low, "min"), (high, "max")):
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise ValueError(f"{what} must be a number, got {v!r}")
    if not isinstance(dec, int) or not 0 <= dec <= 10:
        raise ValueError(f"decimals must be 0..10, got {dec!r}")
    if high < low:
        raise ValueError(f"max ({high}) is below min ({low})")

    def value(f: Any) -> str:
        amount = f.random.uniform(low, high)
        return f"{symbol}{amount:.{dec}f}"

    return value


FAKER_HELPERS: dict[str, Spec] = {
    # name
    "name.firstName": _fixed("first_name"),
    "name.lastName": _fixed("last_name"),
    "name.findName": _fixed("name"),
    "name.fullName": _fixed("name"),
    "name.middleName": _fixed("first_name"),
    "name.prefix": _fixed("prefix"),
    "name.suffix": _fixed("suffix"),
    "name.title": _fixed("job"),
    "name.jobTitle": _fixed("job"),
    "name.gender": _lambda(lambda f: f.random_element(("Male", "Female", "Non-binary"))),
    # internet
    "internet.email": _fixed("email"),
    "internet.exampleEmail": _fixed("safe_email"),
    "internet.userName": _fixed("user_name"),
    "internet.url": _fixed("url"),
    "internet.domainName": _fixed("domain_name"),
    "internet.domainWord": _fixed("domain_word"),
    "internet.domainSuffix": _fixed("tld"),
    "internet.ip": _fixed("ipv4"),
    "internet.ipv6": _fixed("ipv6"),
    "internet.mac": _fixed("mac_address"),
    "internet.userAgent": _fixed("user_agent"),
    "internet.password": _fixed("password"),
    "internet.protocol": _lambda(lambda f: f.random_element(("http", "https"))),
    "internet.color": _fixed("hex_color"),
    "internet.avatar": _fixed("image_url"),
    # address
    "address.city": _fixed("city"),
    "address.country": _fixed("country"),
    "address.countryCode": _fixed("country_code"),
    "address.state": _fixed("state"),
    "address.stateAbbr": _fixed("state_abbr"),
    "address.streetAddress": _fixed("street_address"),
    "address.streetName": _fixed("street_name"),
    "address.secondaryAddress": _fixed("secondary_address"),
    "address.buildingNumber": _fixed("building_number"),
    "address.zipCode": _fixed("postcode"),
    "address.latitude": _lambda(lambda f: str(f.latitude())),
    "address.longitude": _lambda(lambda f: str(f.longitude())),
    "address.timeZone": _fixed("timezone"),
    # commerce and company
    "commerce.productName": _lambda(
        lambda f: (
            f"{f.color_name()} {f.word().capitalize()} {f.random_element(('Chair', 'Car', 'Shoes', 'Table', 'Keyboard', 'Ball'))}"
        )
    ),
    "commerce.product": _lambda(
        lambda f: f.random_element(("Chair", "Car", "Shoes", "Table", "Keyboard", "Ball", "Hat"))
    ),
    "commerce.department": _lambda(
        lambda f: f.random_element(("Books", "Electronics", "Garden", "Grocery", "Toys", "Tools"))
    ),
    "commerce.color": _fixed("color_name"),
    "commerce.price": _money,
    "company.companyName": _fixed("company"),
    "company.companySuffix": _fixed("company_suffix"),
    "company.catchPhrase": _fixed("catch_phrase"),
    "company.bs": _fixed("bs"),
    # lorem
    "lorem.word": _fixed("word"),
    "lorem.words": _count(lambda f, n: " ".join(f.words(n)), 3),
    "lorem.sentence": _count(lambda f, n: f.sentence(nb_words=n or 6), 6),
    "lorem.sentences": _count(lambda f, n: " ".join(f.sentences(n)), 3),
    "lorem.paragraph": _count(lambda f, n: f.paragraph(nb_sentences=n or 3), 3),
    "lorem.paragraphs": _count(lambda f, n: "\n \r".join(f.paragraphs(n)), 3),
    "lorem.text": _lambda(lambda f: f.text()),
    "lorem.slug": _count(lambda f, n: "-".join(f.words(n)), 3),
    "lorem.lines": _count(lambda f, n: "\n".join(f.sentences(n)), 3),
    # phone, finance
    "phone.phoneNumber": _fixed("phone_number"),
    "finance.amount": _money,
    "finance.account": _lambda(lambda f: f.numerify("########")),
    "finance.accountName": _lambda(
        lambda f: (
            f"{f.random_element(('Checking', 'Savings', 'Credit Card', 'Money Market'))} Account"
        )
    ),
    "finance.currencyCode": _fixed("currency_code"),
    "finance.currencyName": _fixed("currency_name"),
    "finance.currencySymbol": _fixed("currency_symbol"),
    "finance.iban": _fixed("iban"),
    "finance.bic": _fixed("swift"),
    "finance.creditCardNumber": _fixed("credit_card_number"),
    "finance.transactionType": _lambda(
        lambda f: f.random_element(("deposit", "withdrawal", "payment", "invoice"))
    ),
    # hacker, system, image, database
    "hacker.abbreviation": _lambda(
        lambda f: f.random_element(("TCP", "HTTP", "SDD", "RAM", "GB", "CSS", "SSL", "AGP", "SQL"))
    ),
    "hacker.noun": _fixed("word"),
    "hacker.verb": _fixed("word"),
    "hacker.phrase": _fixed("sentence"),
    "system.fileName": _fixed("file_name"),
    "system.fileExt": _fixed("file_extension"),
    "system.mimeType": _fixed("mime_type"),
    "system.semver": _lambda(
        lambda f: f"{f.random_int(0, 9)}.{f.random_int(0, 20)}.{f.random_int(0, 50)}"
    ),
    "image.imageUrl": _fixed("image_url"),
    "image.avatar": _fixed("image_url"),
    "database.column": _lambda(
        lambda f: f.random_element(("id", "title", "name", "email", "createdAt", "updatedAt"))
    ),
    "database.type": _lambda(
        lambda f: f.random_element(("int", "varchar", "text", "date", "boolean", "timestamp"))
    ),
}
