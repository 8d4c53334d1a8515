"""X's weighted text length (twitter-text configuration v3), so `siar check` refuses what X would.

X counts NFC-normalised text: code points in four "light" ranges weigh 1, everything else 2; an
emoji — however many code points it is made of (ZWJ families, skin tones, flags, keycaps, tag
sequences) — weighs 2 as a whole; and every URL weighs 23, whatever its length, because X
shortens it to a t.co link. The rules follow twitter-text's `parseTweet` and its conformance
suite; the URL finder keeps twitter-text's shape (preceding character, domain labels, known
top-level domain, path and query endings) with a curated list of generic TLDs, so an unusual
new TLD is counted character by character — a count too high, never too low.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
EMOJI_WEIGHT = 2
DEFAULT_WEIGHT = 2

# twitter-text config v3, "ranges" with weight 100 (= 1 at scale 100), inclusive code points.
LIGHT_RANGES: tuple[tuple[int, int], ...] = (
    (0, 4351),  # Latin, Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, … up to Hangul Jamo
    (8192, 8205),  # spaces, ZWSP, ZWNJ, ZWJ
    (8208, 8223),  # dashes and quotation marks
    (8242, 8247),  # primes
)


def char_weight(code_point: int) -> int:
    """Weight of one code point outside URLs and emoji: 1 in the light ranges, else 2."""
    for start, end in LIGHT_RANGES:
        if start <= code_point <= end:
            return 1
    return DEFAULT_WEIGHT


# --- emoji -------------------------------------------------------------------------------------
#
# twitter-text uses twemoji's list of recommended sequences. Here the sequences are recognised by
# their structure (Unicode TS #51): a pictograph with an optional skin-tone modifier and
# presentation selector, joined by ZWJ; flag pairs; keycaps; tag sequences. The only single
# characters where being an emoji changes the count are the light ones, © and ®: like twemoji,
# they are emoji only with U+FE0F. A pictograph followed by U+FE0E asks for text presentation and
# is not an emoji (twemoji's "leaves as-text variants alone").

_PICTOGRAPH = (
    "\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u2388\u23cf"
    "\u23e9-\u23f3\u23f8-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u27bf"
    "\u2934\u2935\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299"
    "\U0001f000-\U0001faff\U0001fc00-\U0001fffd"
)
_MODIFIER = "\U0001f3fb-\U0001f3ff"
_ELEMENT = (
    rf"(?:[{_PICTOGRAPH}](?:[\U000e0020-\U000e007e]+\U000e007f"  # subdivision flags (England)
    rf"|[{_MODIFIER}]?\ufe0f?(?!\ufe0e))"
    r"|[\u00a9\u00ae]\ufe0f)"
)
_EMOJI = re.compile(
    r"[\U0001f1e6-\U0001f1ff]{2}"  # a flag: two regional indicators
    r"|[0-9#*]\ufe0f?\u20e3"  # keycap
    rf"|{_ELEMENT}(?:\u200d{_ELEMENT})*"
    r"|\ufe0f"  # a stray presentation selector: twemoji takes it as one emoji too
)


# --- URLs --------------------------------------------------------------------------------------

# Country-code TLDs (IANA), and the internationalised ones X's own list knows best.
_CCTLDS = (
    "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq "
    "br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do "
    "dz ec ee eg eh er es et eu fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt "
    "gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr "
    "kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq mr ms mt "
    "mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt "
    "pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st su sv sx sy sz tc "
    "td tf tg th tj tk tl tm tn to tp tr tt tv tw tz ua ug uk um us uy uz va vc ve vg vi vn vu wf "
    "ws ye yt za zm zw "
    "中国 中國 香港 澳門 台湾 台灣 新加坡 한국 ไทย भारत বাংলা рф укр бел срб қаз мон мкд бг ελ ευ ею "
    "հայ გე پاکستان ایران مصر قطر عمان الاردن المغرب الجزائر تونس سورية عراق فلسطين البحرين "
    "السعودية امارات مليسيا سودان"
).split()
# Generic TLDs: the long-standing ones and the new ones seen often in public-sector and news posts.
_GTLDS = (
    "com net org edu gov mil int info biz name pro aero asia cat coop jobs mobi museum post tel "
    "travel academy agency app art audio blog book business cafe camera capital care center chat "
    "city click cloud club codes community company computer consulting design dev digital "
    "directory education email energy events expert express family fashion foundation fund games "
    "gallery global green group guide guru health help holdings host house institute "
    "international jakarta jobs kitchen land law legal life link live llc ltd management market "
    "marketing media money movie network news ngo ninja one ong online org page partners photo "
    "photography photos pics pictures plus press productions properties pub radio rocks run "
    "school science services shop show site social software solutions space sport store stream "
    "studio style support systems team tech technology today tools top town training tube "
    "university video vip vote watch web website wiki win work works world xyz zone google "
    "youtube みんな 中文网 公司 网络 在线 онлайн сайт рус"
).split()
_TLD_ALTERNATION = "|".join(re.escape(tld) for tld in sorted(set(_CCTLDS) | set(_GTLDS), key=len, reverse=True))

# A domain character is anything but punctuation, space, direction marks and the invalid ones
# (twitter-text's `validDomainChars`): so IDN hosts and even "http://✪df.ws" are domains.
_NOT_DOMAIN = (
    r"!'#%&()*+,\\\-./:;<=>?@\[\]\^_{|}~$\"`\s"
    "\u200b\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\ufffe\ufeff\uffff"
)
_DC = rf"[^{_NOT_DOMAIN}]"
_SUBDOMAIN = rf"(?:(?:{_DC}(?:[_-]|{_DC})*)?{_DC}\.)"
_DOMAIN_NAME = rf"(?:(?:{_DC}(?:-|{_DC})*)?{_DC}\.)"
_TLD = rf"(?:{_TLD_ALTERNATION}|xn--[0-9a-z-]+)(?![0-9a-z@+-])"

_LATIN = (
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259\u025b"
    "\u0263\u0268\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)
_CYRILLIC = "\u0400-\u04ff"
_PATH_CHAR = rf"[a-z0-9{_CYRILLIC}{_LATIN}!*';:=+,.$/%#\[\]\-\u2013_~@|&]"
_PARENS = rf"\((?:{_PATH_CHAR}+|{_PATH_CHAR}*\({_PATH_CHAR}+\){_PATH_CHAR}*)\)"
# A path does not end on punctuation, so "see example.com/a." leaves the full stop out.
_PATH_END = rf"(?:[+\-a-z0-9{_CYRILLIC}{_LATIN}=_#/]|{_PARENS})"
_PATH = rf"(?:{_PATH_CHAR}*(?:{_PARENS}{_PATH_CHAR}*)*{_PATH_END}|@{_PATH_CHAR}+/)"
_QUERY = r"\?[a-z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]*[a-z0-9\-_&=#/]"

_URL = re.compile(
    r"(?<![a-z0-9@＠$#＃\ufffe\ufeff\uffff])"  # not inside a word, a mention, a hashtag or a cashtag
    r"(?P<url>(?P<scheme>https?://)?"
    rf"(?P<domain>{_SUBDOMAIN}*{_DOMAIN_NAME}{_TLD})"
    r"(?::[0-9]+)?"
    rf"(?P<path>/{_PATH}*)?"
    rf"(?:{_QUERY})?)",
    re.IGNORECASE,
)
# Without a scheme only ASCII (and accented Latin) domains count, as in twitter-text.
_ASCII_DOMAIN = re.compile(rf"(?:[-a-z0-9{_LATIN}]+\.)+{_TLD}", re.IGNORECASE)
_TCO = re.compile(r"https?://t\.co/([a-z0-9]+)(?:\?[a-z0-9=&#_-]*)?", re.IGNORECASE)
_TCO_SLUG_MAX = 40
_URL_MAX = 4096


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def _host_is_valid(domain: str) -> bool:
    # Each label at most 63 characters once punycode-encoded (twitter-text's `isValidUrl`): a
    # "URL" with a longer label is counted as the text it is.
    try:
        domain.encode("idna")
    except UnicodeError:
        return False
    return True


def find_urls(text: str) -> list[Span]:
    """Where X sees URLs in (already normalised) text, as code-point spans."""
    if "." not in text:
        return []
    spans: list[Span] = []
    for match in _URL.finditer(text):
        start, end = match.span("url")
        domain = match.group("domain")
        if not _host_is_valid(domain) or end - start > _URL_MAX:
            continue
        if match.group("scheme"):
            tco = _TCO.match(text, start)
            if tco and match.group("domain").lower() == "t.co":
                # t.co links take no extra path characters ("http://t.co/abc's" stops before ').
                if len(tco.group(1)) > _TCO_SLUG_MAX:
                    continue
                end = tco.end()
            spans.append(Span(start, end))
            continue
        # A bare domain right after "-", "_", "." or "/" is part of something else ("a/b.com").
        blocked = start > 0 and text[start - 1] in "-_./"
        # The ASCII domains inside a domain run ("日本語example.com"); the last one takes the
        # path, port and query that follow.
        domain_start = match.start("domain")
        inner = list(_ASCII_DOMAIN.finditer(domain))
        for index, ascii_domain in enumerate(inner):
            if blocked and ascii_domain.start() == 0:
                continue
            span_start = domain_start + ascii_domain.start()
            span_end = domain_start + ascii_domain.end()
            if index == len(inner) - 1 and ascii_domain.end() == len(domain):
                span_end = end
            spans.append(Span(span_start, span_end))
    return spans


def weighted_length(text: str) -> int:
    """The length X counts for `text` (twitter-text v3 `parseTweet(...).weightedLength`)."""
    normalised = unicodedata.normalize("NFC", text)
    url_at = {span.start: span.end for span in find_urls(normalised)}
    total = 0
    index = 0
    while index < len(normalised):
        url_end = url_at.get(index)
        if url_end is not None:
            total += URL_WEIGHT
            index = url_end
            continue
        emoji = _EMOJI.match(normalised, index)
        if emoji:
            total += EMOJI_WEIGHT
            index = emoji.end()
            continue
        total += char_weight(ord(normalised[index]))
        index += 1
    return total


def fits(text: str, limit: int = MAX_WEIGHTED_LENGTH) -> bool:
    """True when X would take `text` as one post (not empty, at most `limit` weighted)."""
    length = weighted_length(text)
    return 0 < length <= limit
