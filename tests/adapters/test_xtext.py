"""X's weighted length, checked against twitter-text's conformance suite (validate.yml, extract.yml).

Case descriptions are the suite's own, so a failure names the rule it breaks. Texts with
invisible code points (ZWJ, tags, direction marks) are written with escapes.
"""

from __future__ import annotations

import pytest

from adapters.xtext import char_weight, find_urls, fits, weighted_length

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # man, woman, girl, boy
ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
CJK_LINE = (
    "故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯见长江天际流。朱雀桥边野草花，乌衣巷口夕阳斜。"
    "旧时王谢堂前燕，飞入寻常百姓家。朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    "泪湿罗巾梦不成，夜深前殿按歌声。红颜未老恩先断，斜倚薰笼坐到明。独在异乡为异客，每逢佳节倍思亲。"
    "遥知兄弟登高处，遍插茱萸少一人。"
)
KANA = "あいうえおかきくけこ"
PUNCTUATION_PREFIX = "This is a tweet with general punctuation characters: "
PUNCTUATION_TAIL = " ‐ ‑ ‒ – — ― ‖  ‗ ‘ ’ ‚ ‛ “ ” „ ‟ ′ ″ ‴ ‵ ‶ ‷"

# validate.yml, WeightedTweetsWithDiscountedEmojiCounterTest (config v3) and lengths.
WEIGHTED = [
    ("Regular Tweet with url", "Hi http://test.co", 26),
    ("Just url", "http://test.co", 23),
    ("Long tweet, overflow at char index 280", "285 chars-" + "xxxxxxxxxx-" * 25, 285),
    (
        "Long tweet with url in the middle, overflow at char index 284",
        "285 chars- http://www.twitter.com/jack " + "xxxxxxxxxx-" * 24,
        299,
    ),
    (
        "Long tweet with url at the end, overflow at char index 265",
        "xxxxxxxxxx-" * 24 + " http://www.twitter.com/jack ",
        289,
    ),
    ("10 url string, no overflow", "https://www.twitter.com/aloha " * 10, 240),
    ("160 CJK char, overflow at char index 140", CJK_LINE, 320),
    ("160 emoji char, overflow at char index 140", "\U0001f637" * 160, 320),
    ("3 latin char + 160 CJK char, overflow at char index 141", "the" + CJK_LINE, 323),
    ("'Á' is normalized into 1 char", "A\u0301B", 2),
    ("שּׁ is normalized into 3 chars", "A\ufb2c", 4),
    (
        "282 chars with a normalized character within valid range but outside 280",
        "282 chars-" + "xxxxxxxxxx-" * 24 + "xxxxxA\u0301x",
        281,
    ),
    ("Count a mix of single byte single word, and double word unicode characters", "H\U0001f431☺" + FAMILY, 7),
    ("Count unicode emoji chars inside the basic multilingual plane", "😷👾😡🔥💩", 10),
    (
        "Count unicode emoji chars outside the basic multilingual plane with skin tone modifiers",
        "\U0001f64b\U0001f3fd\U0001f468\u200d\U0001f3a4",
        4,
    ),
    (
        "Handle General Punctuation Characters with visible spaces(u2000-200A), no ZWJ/ZWNJ",
        PUNCTUATION_PREFIX + "".join(map(chr, range(0x2000, 0x200C))) + PUNCTUATION_TAIL,
        110,
    ),
    (
        "Handle General Punctuation Characters with visible spaces(u2000-200A)",
        PUNCTUATION_PREFIX + "".join(map(chr, range(0x2000, 0x200E))) + PUNCTUATION_TAIL,
        112,
    ),
    (
        "Handle a 64 character domain without protocol",
        "randomurlrandomurlrandomurlrandomurlrandomurlrandomurlrandomurls.com",
        68,
    ),
    (
        "Do not allow > 140 CJK characters by virtue of CJK chars greater than 63 punycode encoded chars in the host",
        KANA * 12 + " http://" + KANA * 5 + "あいう.com",
        358,
    ),
    (
        "Allow > 140 CJK characters by virtue of CJK chars less than 63 punycode encoded chars in the host",
        KANA * 12 + " http://" + KANA * 5 + "あい.com",
        264,
    ),
    ("140 family emoji", FAMILY * 140, 280),
    ("Unicode 10.0 emoji", f"Unicode 10.0 emoji: \U0001f92a; \U0001f9d5; \U0001f9d5\U0001f3fe; {ENGLAND}", 34),
    ("Unicode 9.0 emoji", "Unicode 9.0 emoji: \U0001f920; \U0001f483; \U0001f483\U0001f3fe", 29),
    ("Handle invalid characters", "ABC\u202a\uffffABC\ufffe", 12),
    (
        "Tweet text containing directional characters should be considered valid",
        "\u2066\u202ahttp://foobar.پاکستان/\u202c\u2069",
        31,
    ),
    ("Count the number of characters", "This is a test.", 15),
    ("Count a URL starting with http:// as 23 characters", "http://test.com", 23),
    ("Count a URL starting with https:// as 23 characters", "https://test.com", 23),
    ("Count a URL without protocol as 23 characters", "test.com", 23),
    ("Count multiple URLs correctly", "Test https://test.com test https://test.com test.com test", 86),
]


@pytest.mark.parametrize(("description", "text", "expected"), WEIGHTED, ids=[case[0] for case in WEIGHTED])
def test_weighted_length_matches_twitter_text_conformance(description, text, expected):
    assert weighted_length(text) == expected


# Emoji sequences count as one emoji (2) however many code points they hold; these are the shapes
# twemoji-parser's own tests spot-check, plus the everyday ones in Indonesian government posts.
EMOJI = [
    ("a red heart is one emoji", "\u2764", 2),
    ("a red heart with the emoji selector is one emoji", "\u2764\ufe0f", 2),
    ("a red heart with the text selector is two characters", "\u2764\ufe0e", 4),
    ("copyright without the emoji selector is a light character", "\u00a9", 1),
    ("copyright with the emoji selector is an emoji", "\u00a9\ufe0f", 2),
    ("registered with the emoji selector is an emoji", "\u00ae\ufe0f", 2),
    ("a keycap is one emoji", "1\ufe0f\u20e3", 2),
    ("a keycap without the selector is one emoji", "#\u20e3", 2),
    ("a flag is one emoji", "\U0001f1ee\U0001f1e9", 2),
    ("two flags are two emoji", "\U0001f1ee\U0001f1e9\U0001f1ef\U0001f1f5", 4),
    ("a subdivision flag is one emoji", ENGLAND, 2),
    ("a thumbs up with a skin tone is one emoji", "\U0001f44d\U0001f3fd", 2),
    ("woman climbing is one emoji", "\U0001f9d7\u200d\u2640\ufe0f", 2),
    ("woman levitating with skin tone and gender is one emoji", "\U0001f574\U0001f3ff\u200d\u2640\ufe0f", 2),
    ("a rainbow flag is one emoji", "\U0001f3f3\ufe0f\u200d\U0001f308", 2),
    (
        "people holding hands with two skin tones is one emoji",
        "\U0001f9d1\U0001f3fd\u200d\U0001f91d\u200d\U0001f9d1\U0001f3fb",
        2,
    ),
    ("a victory hand with skin tone and selector is one emoji", "\u270c\U0001f3ff\ufe0f", 2),
    ("a joiner with nothing after it is a light character", "\U0001f468\u200d", 3),
    ("a lone joiner is a light character", "a\u200db", 3),
    ("digits are light characters", "2026", 4),
    ("a family followed by a hashtag keeps the hashtag light", FAMILY + "#HariGuru", 11),
]


@pytest.mark.parametrize(("description", "text", "expected"), EMOJI, ids=[case[0] for case in EMOJI])
def test_emoji_sequences_count_as_one_emoji(description, text, expected):
    assert weighted_length(text) == expected


# extract.yml, urls (and urls_with_indices, urls_with_directional_markers, tco_urls_with_params).
URLS = [
    ("Extract a lone URL", "http://example.com", ["http://example.com"]),
    ("Extract a lone unicode url", "http://ああ.com", ["http://ああ.com"]),
    ("Extract valid URL: http://foobar.com/#", "text http://foobar.com/#", ["http://foobar.com/#"]),
    (
        "Extract valid URL: http://google.com/#search?q=iphone%20-filter%3Alinks",
        "text http://google.com/#search?q=iphone%20-filter%3Alinks",
        ["http://google.com/#search?q=iphone%20-filter%3Alinks"],
    ),
    ("Extract valid URL: http://somehost.com:3000", "text http://somehost.com:3000", ["http://somehost.com:3000"]),
    (
        "Extract valid URL: http://xo.com/~matthew+%ff-,.;x",
        "text http://xo.com/~matthew+%ff-,.;x",
        ["http://xo.com/~matthew+%ff-,.;x"],
    ),
    (
        "Extract valid URL: http://en.wikipedia.org/wiki/Primer_(film)",
        "text http://en.wikipedia.org/wiki/Primer_(film)",
        ["http://en.wikipedia.org/wiki/Primer_(film)"],
    ),
    ("Extract valid URL: http://✪df.ws/ejp", "text http://✪df.ws/ejp", ["http://✪df.ws/ejp"]),
    (
        "Extract valid URL: http://example.com/",
        "test http://example.comだよね.comtest/hogehoge",
        ["http://example.com"],
    ),
    ("Extract valid URL: http://chilp.it/?77e8fd", "text http://chilp.it/?77e8fd", ["http://chilp.it/?77e8fd"]),
    (
        "Extract valid URL with hyphen as query ending char",
        "text https://www.youtube.com/watch?v=LOxOAuDHzaw&list=PLPoq910Q9jXhuH6pit_KwIsck9fEz_9U-",
        ["https://www.youtube.com/watch?v=LOxOAuDHzaw&list=PLPoq910Q9jXhuH6pit_KwIsck9fEz_9U-"],
    ),
    ("DO NOT extract invalid URL: http://no-tld", "text http://no-tld", []),
    ("DO NOT extract invalid URL: http://tld-too-short.x", "text http://tld-too-short.x", []),
    ("Extract URL after an opening parenthesis", "(http://twitter.com", ["http://twitter.com"]),
    ("Extract URL ending with # value", "text http://foo.com?#foo text", ["http://foo.com?#foo"]),
    (
        "Extract URLs without protocol on (com|org|edu|gov|net) domains",
        "foo.com foo.net foo.org foo.edu foo.gov",
        ["foo.com", "foo.net", "foo.org", "foo.edu", "foo.gov"],
    ),
    (
        "Extract URLs without protocol not on (com|org|edu|gov|net) domains",
        "foo.baz foo.co.jp www.xxxxxxx.baz www.foo.co.uk wwwww.xxxxxxx foo.comm foo.somecom foo.govedu foo.jp",
        ["foo.co.jp", "www.foo.co.uk", "foo.jp"],
    ),
    (
        "Extract URLs without protocol on ccTLD with slash",
        "t.co/abcde bit.ly/abcde",
        ["t.co/abcde", "bit.ly/abcde"],
    ),
    (
        "Extract URLs with a - or + at the end of the path",
        "Go to http://example.com/a+ or http://example.com/a-",
        ["http://example.com/a+", "http://example.com/a-"],
    ),
    (
        "Extract URLs with an en dash in the path",
        "Go to https://en.m.wikipedia.org/wiki/Hatfield–McCoy_feud please",
        ["https://en.m.wikipedia.org/wiki/Hatfield–McCoy_feud"],
    ),
    ("Extract URLs beginning with a space", "@user Try http:// example.com/path", ["example.com/path"]),
    (
        "Extract long URL without protocol surrounded by CJK characters",
        "これは日本語です。example.com/path/index.html中国語example.com/path한국",
        ["example.com/path/index.html", "example.com/path"],
    ),
    (
        "Extract URLs with and without protocol surrounded by CJK characters",
        "http://twitter.com/これは日本語です。example.com中国語http://t.co/abcde한국twitter.comテストexample2.comテストhttp://twitter.com/abcde",
        [
            "http://twitter.com/",
            "example.com",
            "http://t.co/abcde",
            "twitter.com",
            "example2.com",
            "http://twitter.com/abcde",
        ],
    ),
    (
        "Extract URLs with protocol and path containing Cyrillic characters",
        "Go to http://twitter.com/Русские_слова",
        ["http://twitter.com/Русские_слова"],
    ),
    (
        "Extract non-ASCII host name URLs with protocol, but ignore host names bigger than 63 characters",
        "http://exampleこれは日本語です.com/path/index.html http://" + "あ" * 300 + ".com/path/index.html",
        ["http://exampleこれは日本語です.com/path/index.html"],
    ),
    (
        "Extract some (tv|co) short URLs without protocol on ccTLD domains without path",
        "MLB.tv vine.co twitch.tv t.co",
        ["MLB.tv", "vine.co", "twitch.tv", "t.co"],
    ),
    (
        "Extract URLs with underscores and dashes in the subdomain",
        "test http://sub_domain-dash.twitter.com",
        ["http://sub_domain-dash.twitter.com"],
    ),
    ("Extract URL with minimum number of valid characters", "test http://a.b.cd", ["http://a.b.cd"]),
    ("DO NOT extract URLs containing leading dashes in the subdomain", "test http://-leadingdash.twitter.com", []),
    ("DO NOT extract URLs containing trailing dashes in the domain name", "test http://twitter-.com", []),
    ("DO NOT extract URLs containing underscores in the domain name", "test http://twitter_underscore.com", []),
    ("DO NOT extract URLs containing underscores in the tld", "test http://twitter.c_o_m", []),
    (
        "Extract valid URL http://www.foo.com/foo/path-with-period./",
        "test http://www.foo.com/foo/path-with-period./",
        ["http://www.foo.com/foo/path-with-period./"],
    ),
    ("Extract valid URL ELPAÍS.com", "test ELPAÍS.com", ["ELPAÍS.com"]),
    ("DO NOT include period at the end of URL", "test http://twitter.com/.", ["http://twitter.com/"]),
    (
        "Extract a URL with a ton of trailing periods",
        "Test a ton of periods http://example.com/path" + "." * 42,
        ["http://example.com/path"],
    ),
    (
        "DO NOT extract URLs in hashtag or @mention",
        "#test.com @test.com #http://test.com @http://test.com #t.co/abcde @t.co/abcde",
        [],
    ),
    (
        "Extract a t.co URL with a trailing apostrophe",
        "I really like http://t.co/pbY2NfTZ's website",
        ["http://t.co/pbY2NfTZ"],
    ),
    (
        "DO NOT extract URLs with > 40 characters in a t.co slug",
        "I really like http://t.co/abcdefghijklmnopqrstuvwxyz012345678901234",
        [],
    ),
    (
        "Extract URL before newline",
        "http://twitter.com\nhttp://example.com\nhttp://example.com/path\nexample.com/path\nit.so\nit.so/abcde",
        [
            "http://twitter.com",
            "http://example.com",
            "http://example.com/path",
            "example.com/path",
            "it.so",
            "it.so/abcde",
        ],
    ),
    (
        "DO NOT extract URL if preceded by $",
        "$http://twitter.com $twitter.com $http://t.co/abcde $t.co/abcde $t.co $TVI.CA $RBS.CA",
        [],
    ),
    ("DO NOT extract .bz2 file name as URL", "long.test.tar.bz2 test.tar.bz2 tar.bz2", []),
    ("DO NOT extract URL with gTLD followed by @ sign", "john.doe.gov@mail.com", []),
    ("DO NOT extract URL with ccTLD followed by @ sign", "john.doe.jp@mail.com", []),
    (
        "Properly extract URL that contains t.co in referer",
        "http://www.foo.com?referer=https://t.co/abcde http://t.co/xyzzy",
        ["http://www.foo.com?referer=https://t.co/abcde", "http://t.co/xyzzy"],
    ),
    ("Extract I18N URL", "test http://xn--ls8h.XN--ls8h.la/", ["http://xn--ls8h.XN--ls8h.la/"]),
    (
        "Extract URLs with IDN(not encoded)",
        "test http://foobar.みんな/ http://foobar.中国/ http://foobar.پاکستان/ ",
        ["http://foobar.みんな/", "http://foobar.中国/", "http://foobar.پاکستان/"],
    ),
    (
        "Extract URLs from RTL text",
        "\u2066\u202atest abcdef.com پاکستان http://twitter.com/\u202c\u2069",
        ["abcdef.com", "http://twitter.com/"],
    ),
    (
        "Extract a valid URL with params: https://t.co/asdfdf?a=b#123",
        "text https://t.co/asdfdf?a=b#123",
        ["https://t.co/asdfdf?a=b#123"],
    ),
    ("DO NOT extract invalid URL", "Hello http://xn--はじめよう.com/index.html", []),
]


@pytest.mark.parametrize(("description", "text", "expected"), URLS, ids=[case[0] for case in URLS])
def test_urls_are_found_where_twitter_text_finds_them(description, text, expected):
    assert [text[span.start : span.end] for span in find_urls(text)] == expected


def test_an_indonesian_government_post_with_a_long_link_counts_the_link_as_23():
    link = "https://www.palembang.go.id/berita/2026/11/25/selamat-hari-guru-nasional-untuk-seluruh-guru"
    text = f"Selamat Hari Guru Nasional! Terima kasih untuk seluruh guru di Kota Palembang. {link}"
    assert weighted_length(text) == len(text) - len(link) + 23


def test_a_bare_go_id_domain_counts_as_a_link():
    assert weighted_length("Info: jakarta.go.id") == len("Info: ") + 23


def test_a_full_stop_after_a_link_is_counted_as_text():
    assert weighted_length("Baca di https://example.go.id/a.") == len("Baca di ") + 23 + 1


def test_the_light_ranges_are_exactly_those_of_config_v3():
    light = [0, 4351, 8192, 8205, 8208, 8223, 8242, 8247]
    heavy = [4352, 8191, 8206, 8207, 8224, 8241, 8248, 0x3042, 0x1F600]
    assert all(char_weight(code_point) == 1 for code_point in light)
    assert all(char_weight(code_point) == 2 for code_point in heavy)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", False), ("x" * 280, True), ("x" * 281, False), ("あ" * 140, True), ("あ" * 141, False)],
    ids=[
        "empty text is not a post",
        "280 light characters fit",
        "281 light characters do not fit",
        "140 CJK characters fit",
        "141 CJK characters do not fit",
    ],
)
def test_fits_says_whether_x_would_take_the_text(text, expected):
    assert fits(text) is expected
