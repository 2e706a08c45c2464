"""Built-in families, part A: classification, extraction, string transformations, counting, ciphers.

Every family here is a short-answer task whose correct answer is computed by code, so the answer
the model is trained on (`Instance.output`) is right by construction, and the check is strict:
the phrasing says how to answer ("one word", "the number only", "a JSON array", "separated by
commas") and the check tests exactly that, so an answer that rambles fails.

Checks, by kind of answer:

- a label (sentiment, topic, parity, language): `exact_match` ignoring case, punctuation and
  spacing. Not `choice`: an answer that echoes the options ("positive or negative?") opens with a
  label and `choice` would credit it.
- a number: `exact_match` ignoring surrounding spaces and punctuation, so `12.` and `1,200` pass
  but `12 words` does not.
- a comma-separated list: `exact_match` against both `a, b` and `a,b`.
- a JSON value: `json_match`, strict (the whole answer, or its single ```json block, is the JSON).
- a transformed string: `exact_match`; case is kept when the task is about case.

Inputs come from the small word lists below and random numbers, so every instance is generated,
never downloaded. About half of the families put their input in `context` (the row's input field)
and the rest inside the instruction; four give a system prompt.
"""

from __future__ import annotations

import codecs
import json
import random
from typing import Any

from instill.data.builtin.core import Check, Instance, register_family

# --------------------------------------------------------------------------- word lists

NAMES = (
    "Ada", "Omar", "Lena", "Ravi", "Mia", "Jonas", "Sofia", "Kenji", "Amara", "Lucas",
    "Priya", "Noah", "Elena", "Tariq", "Hana", "Mateo", "Chloe", "Felix", "Zara", "Ivan",
    "Nora", "Samuel", "Aisha", "Leo", "Maya", "Diego", "Ingrid", "Kofi", "Yuki", "Clara",
)  # fmt: skip
SURNAMES = (
    "Smith", "Garcia", "Novak", "Okafor", "Tanaka", "Rossi", "Patel", "Berg", "Kowalski",
    "Silva", "Dubois", "Nguyen", "Larsen", "Haddad", "Moreau",
)  # fmt: skip
CITIES = (
    "Paris", "Lisbon", "Nairobi", "Oslo", "Lima", "Cairo", "Seoul", "Toronto", "Madrid",
    "Berlin", "Dublin", "Mumbai", "Sydney", "Prague", "Vienna", "Kyoto", "Chicago", "Athens",
    "Bogota", "Accra",
)  # fmt: skip
FRUITS = (
    "apple", "banana", "cherry", "mango", "pear", "plum", "grape", "lemon", "peach", "kiwi",
    "orange", "melon", "apricot", "fig", "lime", "papaya",
)  # fmt: skip
ANIMALS = (
    "cat", "dog", "horse", "rabbit", "tiger", "eagle", "otter", "zebra", "camel", "panda",
    "wolf", "dolphin", "parrot", "turtle", "goat", "lion", "fox", "owl", "whale", "frog",
    "falcon", "lizard", "monkey", "badger", "beaver", "donkey", "ferret", "hamster", "jaguar",
    "koala", "penguin", "salmon", "spider", "squirrel", "walrus",
)  # fmt: skip
COLOURS = (
    "red", "blue", "green", "yellow", "purple", "black", "white", "pink", "brown", "grey",
    "gold", "silver",
)  # fmt: skip
JOBS = (
    "teacher", "nurse", "pilot", "baker", "engineer", "lawyer", "chef", "farmer", "painter",
    "plumber", "doctor", "writer", "architect", "dentist",
)  # fmt: skip
NOUNS = (
    "lamp", "river", "garden", "window", "bridge", "mountain", "pencil", "candle", "forest",
    "market", "ladder", "kettle", "jacket", "island", "castle", "rocket", "piano", "harbor",
    "meadow", "basket", "mirror", "blanket", "tunnel", "valley", "engine", "pocket", "wallet",
    "hammer", "saddle", "lantern", "compass", "anchor", "violin", "trumpet", "chimney",
    "cottage", "glacier", "canyon", "orchard", "village", "station", "library", "button",
    "carpet", "feather", "helmet", "jungle", "magnet", "napkin", "pepper", "puzzle", "ribbon",
    "teapot", "umbrella", "walnut", "zipper", "barrel", "cactus", "desert", "guitar", "marble",
    "needle", "parcel", "planet", "shadow", "ticket", "whistle", "pillow", "saucer", "tomato",
)  # fmt: skip
ADJECTIVES = (
    "quick", "quiet", "bright", "small", "happy", "ancient", "golden", "gentle", "brave",
    "lazy", "tiny", "shiny", "warm", "cold", "sleepy", "noisy", "clever", "hidden", "wild",
    "proud",
)  # fmt: skip
VERBS = (
    "jumps", "sings", "runs", "waits", "paints", "reads", "swims", "dances", "sleeps",
    "climbs", "writes", "cooks", "laughs", "walks",
)  # fmt: skip
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Single words for letter-level tasks: no palindromes, so reversing always changes the word.
WORDS = tuple(
    sorted({w for w in FRUITS + ANIMALS + NOUNS + ADJECTIVES if len(w) >= 4 and w != w[::-1]})
)

# Words that belong to one of the four languages only (no "animal", "table" or "pan", which two
# of them share). German nouns keep their capital, as German writes them.
LEXICONS = {
    "English": (
        "house", "window", "bread", "cheese", "garden", "morning", "friend", "yellow",
        "church", "kitchen", "mountain", "bridge", "river", "happy", "quickly", "thunder",
        "shoulder", "blanket", "pencil", "flower", "knife", "weather", "bottle", "chicken",
        "spoon", "shoe", "newspaper", "summer", "cloud", "pillow", "honey", "ladder", "forest",
        "teacher", "street", "button",
    ),
    "French": (
        "maison", "fenêtre", "fromage", "jardin", "matin", "ami", "jaune", "église",
        "montagne", "pont", "rivière", "heureux", "rapidement", "tonnerre", "épaule",
        "couverture", "fleur", "couteau", "bouteille", "poulet", "cuillère", "boulangerie",
        "chapeau", "oiseau", "voiture", "chaussure", "journal", "été", "nuage", "oreiller",
        "échelle", "forêt", "enseignant", "hiver", "gâteau", "fraise",
    ),
    "Spanish": (
        "casa", "ventana", "queso", "mañana", "amarillo", "iglesia", "cocina", "montaña",
        "puente", "río", "feliz", "rápidamente", "trueno", "hombro", "manta", "lápiz",
        "cuchillo", "tiempo", "botella", "pollo", "cuchara", "zapato", "perro", "pájaro",
        "coche", "ciudad", "verano", "periódico", "nube", "almohada", "escalera", "bosque",
        "calle", "invierno", "fresa", "mantequilla",
    ),
    "German": (
        "Haus", "Fenster", "Brot", "Käse", "Garten", "Morgen", "Freund", "gelb", "Kirche",
        "Küche", "Berg", "Brücke", "Fluss", "glücklich", "schnell", "Donner", "Schulter",
        "Decke", "Bleistift", "Blume", "Messer", "Wetter", "Flasche", "Löffel", "Schuh",
        "Hund", "Zeitung", "Sommer", "Wolke", "Kissen", "Honig", "Leiter", "Wald", "Lehrer",
        "Straße", "Erdbeere",
    ),
}  # fmt: skip

# --------------------------------------------------------------------------- checks

_LABEL_NORMALIZE = ["lowercase", "strip_punctuation", "collapse_whitespace", "strip"]
_LIST_NORMALIZE = ["lowercase", "collapse_whitespace", "strip"]


def _label_check(label: str) -> Check:
    """One-word labels: case, punctuation and spacing do not matter (`Positive.` passes)."""
    return Check("exact_match", label, {"normalize": _LABEL_NORMALIZE})


def _number_check(n: int) -> Check:
    """A bare non-negative integer: `12.` and `1,200` pass, `12 words` does not."""
    return Check("exact_match", str(n), {"normalize": ["strip_punctuation", "strip"]})


def _list_check(items: list[Any]) -> tuple[str, Check]:
    """The answer `a, b, c` and its check, which also accepts `a,b,c`."""
    texts = [str(x) for x in items]
    answer = ", ".join(texts)
    return answer, Check("exact_match", [answer, ",".join(texts)], {"normalize": _LIST_NORMALIZE})


def _json_answer(value: Any) -> tuple[str, Check]:
    """The JSON text of `value` and a strict `json_match` check against it."""
    return json.dumps(value, ensure_ascii=False), Check("json_match", value)


def _string_check(text: str, keep_case: bool = False) -> Check:
    return Check("exact_match", text, {"normalize": ["strip"] if keep_case else _LIST_NORMALIZE})


def _full_name(rng: random.Random, first: str) -> str:
    return f"{first} {rng.choice(SURNAMES)}" if rng.random() < 0.4 else first


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


# --------------------------------------------------------------------------- 1. sentiment

_PRODUCTS = (
    "blender", "pair of headphones", "backpack", "phone case", "coffee maker", "desk lamp",
    "rain jacket", "keyboard", "water bottle", "vacuum cleaner", "tent", "toaster",
)  # fmt: skip
_GENRES = ("thriller", "comedy", "documentary", "cartoon", "horror film", "romance", "musical")
_WHEN = ("last week", "yesterday", "a month ago", "on Saturday", "over the holidays", "recently")
_REVIEW_CLAUSES = {
    ("product", "positive"): (
        "it works perfectly", "the build quality is excellent", "it was worth every penny",
        "setting it up took less than a minute", "I would happily buy it again",
        "it exceeded my expectations", "it still looks brand new",
    ),
    ("product", "negative"): (
        "it broke after two days", "it was a complete waste of money",
        "the build quality is terrible", "it stopped working within a week",
        "I regret buying it", "the instructions were useless",
        "it arrived damaged and support never replied",
    ),
    ("movie", "positive"): (
        "the acting was brilliant", "the story kept me hooked until the end",
        "the soundtrack was wonderful", "I laughed and cried in all the right places",
        "it is one of the best films I have seen this year", "the ending was beautiful",
    ),
    ("movie", "negative"): (
        "the plot was boring and predictable", "the acting was wooden",
        "I nearly fell asleep halfway through", "the dialogue was painfully bad",
        "it was two hours I will never get back", "the ending made no sense at all",
    ),
}  # fmt: skip
_REVIEW_CLOSERS = {
    "positive": ("Highly recommended!", "Five stars from me.", "Absolutely worth it.", ""),
    "negative": ("Avoid it.", "One star, and that is generous.", "Not worth it at all.", ""),
}


def _review(rng: random.Random, label: str) -> str:
    domain = rng.choice(("product", "movie"))
    when = rng.choice(_WHEN)
    if domain == "product":
        item = rng.choice(_PRODUCTS)
        opener = rng.choice(
            (
                f"I bought this {item} {when}.",
                f"My {rng.choice(('sister', 'brother', 'friend', 'neighbour'))} gave me this "
                f"{item} as a gift.",
                f"We have used this {item} for {rng.randint(2, 9)} weeks now.",
                f"Ordered the {item} online {when}.",
            )
        )
    else:
        title = f"The {rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()}"
        opener = rng.choice(
            (
                f'I watched "{title}" {when}.',
                f'We saw the {rng.choice(_GENRES)} "{title}" at the cinema {when}.',
                f'{rng.choice(NAMES)} and I streamed "{title}" {when}.',
            )
        )
    first, second = rng.sample(_REVIEW_CLAUSES[domain, label], 2)
    body = first[0].upper() + first[1:] + (f", and {second}." if rng.random() < 0.6 else ".")
    closer = rng.choice(_REVIEW_CLOSERS[label])
    return " ".join(part for part in (opener, body, closer) if part)


def _sentiment(rng: random.Random) -> Instance:
    label = rng.choice(("positive", "negative"))
    return Instance(
        slots={},
        output=label,
        check=_label_check(label),
        context=_review(rng, label),
        system=rng.choice(
            (
                "You are a sentiment classifier. You answer with a single lowercase label.",
                "You label customer and film reviews. Keep every answer to one word.",
                "You are a careful annotator of opinions in text.",
            )
        ),
    )


register_family(
    "sentiment",
    "classification",
    [
        "Classify the sentiment of this review as positive or negative. Answer with one word.",
        "Is the following review positive or negative? Reply with just the label.",
        "Read the review and decide whether the writer liked what they are reviewing. Write "
        "positive if they did and negative if they did not, and nothing else.",
        "Sentiment analysis task. Label the review: positive or negative. Output only the label.",
        "What overall opinion does this review express? Respond with a single word: positive or "
        "negative.",
        "Here is a customer review. Tell me whether its sentiment is positive or negative, using "
        "only that one word.",
        "Would you call this review positive or negative? One word, please.",
    ],
    _sentiment,
    "a templated product or film review (context) -> positive/negative",
)

# --------------------------------------------------------------------------- 2. topic

_TOPIC_SENTENCES = {
    "sports": (
        "The {city} Tigers beat their rivals {n} to {m} in last night's match.",
        "The {city} marathon drew {big} runners this year.",
        "{name} scored twice as the team won the championship final.",
        "The tennis player {name} reached the semi-final after a five-set battle.",
        "Our coach says the squad must train harder before the next game against {city}.",
        "{name} broke the national record in the 400 metres hurdles.",
    ),
    "politics": (
        "The parliament in {city} passed the new tax law by {n} votes.",
        "{name} announced a campaign to become mayor of {city}.",
        "The minister resigned after the election results were published in {month}.",
        "Voters in {city} will choose a new president next {month}.",
        "The opposition party criticised the government's budget plan.",
        "Senator {name} proposed a bill to lower the voting age to {n}.",
    ),
    "technology": (
        "The latest smartphone ships with a faster chip and {n} GB of memory.",
        "{name} wrote software that lets robots map a room in seconds.",
        "A new update fixes a bug that drained laptop batteries.",
        "Engineers in {city} built a computer that runs entirely on solar power.",
        "The startup released an app that translates speech in real time.",
        "{name} explained how the new processor handles {big} operations per second.",
    ),
    "food": (
        "{name} baked {a_fruit} pie with a buttery crust for the family dinner.",
        "This soup recipe needs {n} cloves of garlic and a handful of fresh basil.",
        "The new restaurant in {city} serves spicy noodles and grilled fish.",
        "Add sugar to the dough and let it rest for {n} minutes before baking.",
        "{name} makes the best {fruit} jam, slow-cooked with lemon zest.",
        "Season the roasted vegetables with olive oil, salt and a little pepper.",
    ),
    "music": (
        "{name} played the guitar solo at the concert in {city}.",
        "The band's new album has {n} songs, including a slow piano ballad.",
        "The orchestra rehearsed the symphony for {n} hours before the premiere.",
        "{name} is learning to sing jazz and practises scales every morning.",
        "Tickets for the rock festival in {city} sold out in {n} minutes.",
        "The choir performed a new song written by {name}.",
    ),
}
TOPICS = tuple(_TOPIC_SENTENCES)


def _topic(rng: random.Random) -> Instance:
    label = rng.choice(TOPICS)
    fruit = rng.choice(FRUITS)
    sentence = rng.choice(_TOPIC_SENTENCES[label]).format(
        name=rng.choice(NAMES),
        city=rng.choice(CITIES),
        month=rng.choice(MONTHS),
        n=rng.randint(2, 60),
        m=rng.randint(0, 1),
        big=rng.randint(200, 9000),
        fruit=fruit,
        a_fruit=_a(fruit),
    )
    return Instance(slots={}, output=label, check=_label_check(label), context=sentence)


register_family(
    "topic",
    "classification",
    [
        "Which topic is this sentence about: sports, politics, technology, food or music? "
        "Answer with the topic only.",
        "Classify the text into one of these categories: sports, politics, technology, food, "
        "music. Reply with the category name.",
        "Read the sentence and name its subject area. Choose from sports, politics, technology, "
        "food and music, and write just that word.",
        "Topic label (sports / politics / technology / food / music) for the following text? "
        "Give one word.",
        "Decide what the text below is mainly about. Possible answers: sports, politics, "
        "technology, food, music. Output nothing but the answer.",
        "Assign the sentence to a topic. The topics are sports, politics, technology, food and "
        "music; respond with exactly one of them.",
        "Is this about sports, politics, technology, food or music? One word.",
    ],
    _topic,
    "a templated sentence (context) -> one of five topic labels",
)

# --------------------------------------------------------------------------- 3. parity


def _parity(rng: random.Random) -> Instance:
    n = rng.randint(0, 9999)
    label = "even" if n % 2 == 0 else "odd"
    return Instance(slots={"number": n}, output=label, check=_label_check(label))


register_family(
    "parity",
    "classification",
    [
        "Is {number} even or odd? Answer with one word.",
        "Tell me whether the number {number} is even or odd. Reply with just even or odd.",
        "{number}: even or odd? Answer with a single word.",
        "Decide if {number} is divisible by 2. Write even if it is and odd if it is not, with "
        "nothing else.",
        "Classify the integer {number} by parity (even or odd). Output only the label.",
        "What is the parity of {number}? Respond with either even or odd.",
        "Without explaining, say whether {number} is an even or an odd number. One word only.",
    ],
    _parity,
    "an integer 0-9999 -> even/odd",
)

# --------------------------------------------------------------------------- 4. word_language


def _word_language(rng: random.Random) -> Instance:
    language = rng.choice(tuple(LEXICONS))
    word = rng.choice(LEXICONS[language])
    return Instance(slots={"word": word}, output=language, check=_label_check(language))


register_family(
    "word_language",
    "classification",
    [
        'Which language is the word "{word}" from: English, French, Spanish or German? Answer '
        "with the language name only.",
        'Identify the language of "{word}". Choose between English, French, Spanish and German '
        "and reply with just the language.",
        'The word "{word}" belongs to one of these languages: English, French, Spanish, German. '
        "Which one? One word.",
        "Name the language this word is written in (English, French, Spanish or German): {word}. "
        "Give only the name.",
        'What language does "{word}" come from? Possible answers are English, French, Spanish '
        "and German. Write only your answer.",
        "Language identification. Word: {word}. Options: English, French, Spanish, German. Reply "
        "with one option.",
        'Tell me in one word which language "{word}" is: English, French, Spanish or German.',
    ],
    _word_language,
    "a word from a small English/French/Spanish/German lexicon -> the language",
)

# --------------------------------------------------------------------------- 5. extract_numbers

# `{0}`, `{1}`... are numbers drawn by the kind letters: i = integer 2-500, s = small 1-12,
# d = decimal with one digit after the point, t = temperature (may be negative).
_NUMBER_SENTENCES = (
    ("{name} ran {0} kilometers in {1} minutes and then drank {2} glasses of water.", "iis"),
    ("The shop in {city} sold {0} apples, {1} pears and {2} melons on {day}.", "iii"),
    ("At {0} o'clock it was {1} degrees, and by midnight it had dropped to {2}.", "stt"),
    ("The recipe needs {0} eggs, {1} grams of flour and {2} cups of milk.", "sid"),
    ("{name} paid {0} dollars for {1} concert tickets.", "ds"),
    ("Room {0} on floor {1} has {2} chairs and {3} desks.", "isii"),
    ("The train from {city} left with {0} passengers and arrived {1} minutes late.", "is"),
    ("Our team of {0} people finished {1} tasks in {2} days and fixed {3} bugs.", "siii"),
    ("The package weighs {0} kilograms and measures {1} centimeters across.", "di"),
    ("In {city} the thermometer read {0} degrees on {day}.", "t"),
)


def _draw_number(rng: random.Random, kind: str) -> int | float:
    if kind == "i":
        return rng.randint(2, 500)
    if kind == "s":
        return rng.randint(1, 12)
    if kind == "d":  # never a whole number, so "2.0" vs "2" cannot arise
        return round(rng.randint(0, 99) + rng.randint(1, 9) / 10, 1)
    return rng.randint(-20, 35)


def _extract_numbers(rng: random.Random) -> Instance:
    template, kinds = rng.choice(_NUMBER_SENTENCES)
    numbers = [_draw_number(rng, kind) for kind in kinds]
    text = template.format(
        *numbers, name=rng.choice(NAMES), city=rng.choice(CITIES), day=rng.choice(WEEKDAYS)
    )
    output, check = _json_answer(numbers)
    return Instance(slots={}, output=output, check=check, context=text)


register_family(
    "extract_numbers",
    "extraction",
    [
        "List all the numbers that appear in the text, in the order they appear, as a JSON "
        "array. Output only the JSON.",
        "Extract every number from the sentence below and return them as a JSON list of "
        "numbers, nothing else.",
        "Find the numbers mentioned in this text. Reply with a JSON array of numbers, keeping "
        "their original order.",
        "Return a JSON array containing each number in the text (negative numbers keep their "
        "sign, decimals stay decimals). No other text.",
        "Which numbers occur in the following sentence? Give them, in order of appearance, as "
        "a JSON array.",
        "Pull out the numeric values from the input and write them as a JSON array of numbers.",
        "Output a JSON list with the numbers found in this text, first to last.",
    ],
    _extract_numbers,
    "a sentence with 1-4 numbers (context) -> JSON array of the numbers in order",
)

# --------------------------------------------------------------------------- 6. extract_dates

_DATE_SENTENCES = (
    "{name} was born on {0}.",
    "The contract was signed on {0} and expires on {1}.",
    "The conference in {city} runs from {0} to {1}.",
    "We moved the deadline from {0} to {1}, and the final review is on {2}.",
    "Invoices dated {0} and {1} are still unpaid.",
    "The library in {city} reopened on {0} after closing on {1}.",
    "{name} flew to {city} on {0}, came back on {1} and left again on {2}.",
    "The first payment is due on {0}.",
    "Between {0} and {1} the museum in {city} welcomed {n} visitors.",
)


def _format_date(rng: random.Random, year: int, month: int, day: int) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"{year:04d}-{month:02d}-{day:02d}"
    if style == 1:
        return f"{MONTHS[month - 1]} {day}, {year}"
    return f"{day} {MONTHS[month - 1]} {year}"


def _extract_dates(rng: random.Random) -> Instance:
    template = rng.choice(_DATE_SENTENCES)
    count = sum(f"{{{k}}}" in template for k in range(3))
    dates: list[tuple[int, int, int]] = []
    while len(dates) < count:
        date = (rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28))
        if date not in dates:
            dates.append(date)
    text = template.format(
        *(_format_date(rng, *d) for d in dates),
        name=rng.choice(NAMES),
        city=rng.choice(CITIES),
        n=rng.randint(300, 9000),
    )
    output, check = _json_answer([f"{y:04d}-{m:02d}-{d:02d}" for y, m, d in dates])
    return Instance(slots={}, output=output, check=check, context=text)


register_family(
    "extract_dates",
    "extraction",
    [
        "Extract all dates from the text and return them as a JSON array of strings in "
        "YYYY-MM-DD format, in the order they appear.",
        "List every date mentioned below as a JSON list, writing each date in ISO format "
        "(YYYY-MM-DD). Output only the JSON.",
        "Find the dates in this sentence. Answer with a JSON array of ISO 8601 dates such as "
        '"2020-01-31", keeping their order.',
        "Which dates does the text mention? Reply in JSON: an array of YYYY-MM-DD strings, first "
        "to last.",
        "Convert each date in the following text to YYYY-MM-DD and give them as a JSON array, "
        "nothing else.",
        "Return a JSON list of the dates in the input, normalised to year-month-day form (for "
        'example "1999-12-05").',
        "Date extraction: output the dates found in the sentence as a JSON array of ISO dates, "
        "in order of appearance.",
    ],
    _extract_dates,
    "a sentence with 1-3 dates in ISO or written form (context) -> JSON array of ISO dates",
)

# --------------------------------------------------------------------------- 7. extract_names

# Cities and capitalised sentence openers ("Yesterday") are distractors: they are not people.
_NAME_SENTENCES = (
    "{0} met {1} at the station in {city}.",
    "Yesterday {0} lent a book to {1}.",
    "The prize went to {0}, while {1} and {2} shared second place.",
    "{0} moved to {city} last year.",
    "According to {0}, the bridge in {city} will reopen in {month}.",
    "{0}, {1} and {2} are planning a trip to {city}.",
    "The report was written by {0} and reviewed by {1}.",
    "When {0} called, {1} was cooking dinner.",
    "Last {month} {0} visited {city} with {1}.",
)


def _extract_names(rng: random.Random) -> Instance:
    template = rng.choice(_NAME_SENTENCES)
    count = sum(f"{{{k}}}" in template for k in range(3))
    people = [_full_name(rng, first) for first in rng.sample(NAMES, count)]
    text = template.format(*people, city=rng.choice(CITIES), month=rng.choice(MONTHS))
    output, check = _json_answer(people)
    return Instance(slots={}, output=output, check=check, context=text)


register_family(
    "extract_names",
    "extraction",
    [
        "List the names of all people mentioned in the text as a JSON array of strings, in the "
        "order they appear. Do not include places.",
        "Extract every person's name from the sentence below and return a JSON list. Output "
        "only the JSON.",
        "Who is mentioned in this text? Answer with a JSON array of the people's names, first to "
        "last.",
        "Find the people named in the input. Reply with a JSON list of their names exactly as "
        "written.",
        "Return a JSON array containing the names of the persons in the following sentence (not "
        "cities or other places).",
        "Named-entity extraction: give the person names in this sentence as a JSON array, in "
        "order of appearance.",
        "Which people appear in the text? Write their names as a JSON list of strings and "
        "nothing else.",
    ],
    _extract_names,
    "a sentence with 1-3 person names and a place (context) -> JSON array of the names",
)

# --------------------------------------------------------------------------- 8. fields_to_json

_EXTRA_FIELDS = ("age", "city", "job", "pet", "color")


def _field_value(rng: random.Random, key: str) -> str | int:
    if key == "age":
        return rng.randint(18, 90)
    pool = {"city": CITIES, "job": JOBS, "pet": ANIMALS, "color": COLOURS}[key]
    return rng.choice(pool)


def _describe_person(record: dict[str, Any]) -> str:
    clauses = {
        "age": "is {} years old",
        "city": "lives in {}",
        "job": "works as {}",
        "pet": "has a pet {}",
        "color": "likes the color {}",
    }
    parts = [
        clauses[key].format(_a(value) if key == "job" else value)
        for key, value in record.items()
        if key != "name"
    ]
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{record['name']} {joined}."


def _fields_to_json(rng: random.Random) -> Instance:
    keys = ["name", *rng.sample(_EXTRA_FIELDS, rng.randint(1, 3))]
    record = {"name": rng.choice(NAMES)} | {k: _field_value(rng, k) for k in keys[1:]}
    style = rng.randrange(4)
    if style == 0:
        text = "; ".join(f"{k.title()}: {v}" for k, v in record.items())
    elif style == 1:
        text = "\n".join(f"{k} = {v}" for k, v in record.items())
    elif style == 2:
        text = " | ".join(f"{k.upper()} - {v}" for k, v in record.items())
    else:
        text = _describe_person(record)
    quoted = [f'"{k}"' for k in keys]
    output, check = _json_answer(record)
    return Instance(
        slots={"keys": ", ".join(quoted[:-1]) + " and " + quoted[-1]},
        output=output,
        check=check,
        context=text,
        system=rng.choice(
            (
                "You are a data-entry assistant. You reply with valid JSON only.",
                "You convert free text into structured records.",
                "You are an information extraction system that outputs JSON.",
            )
        ),
    )


register_family(
    "fields_to_json",
    "extraction",
    [
        "Turn the record below into a JSON object with the keys {keys}. Use numbers for numeric "
        "values and output only the JSON.",
        "Extract {keys} from the text and return them as a JSON object with exactly those keys.",
        "Convert this information into JSON. The object must have exactly these keys: {keys}.",
        "Read the text and fill in a JSON object with the fields {keys}. Numbers should be JSON "
        "numbers, not strings. Reply with the JSON only.",
        "Produce a JSON object whose keys are {keys}, taking the values from the input.",
        "From the following description, build a JSON object with the keys {keys} and nothing "
        "else.",
        "Give me the {keys} from this text as one JSON object (numeric values as numbers).",
    ],
    _fields_to_json,
    "a key-value record or a sentence about a person (context) -> JSON object with given keys",
)

# --------------------------------------------------------------------------- phrases


def _phrase(rng: random.Random) -> str:
    """A short phrase in natural case: a few words, sometimes a name, a city or a number."""
    style = rng.randrange(5)
    if style == 0:
        return (
            f"the {rng.choice(ADJECTIVES)} {rng.choice(ANIMALS)} {rng.choice(VERBS)} near the "
            f"{rng.choice(NOUNS)}"
        )
    if style == 1:
        return f"meet {rng.choice(NAMES)} in {rng.choice(CITIES)} at {rng.randint(1, 12)} o'clock"
    if style == 2:
        return f"a {rng.choice(COLOURS)} {rng.choice(NOUNS)} for {rng.choice(NAMES)}"
    if style == 3:
        return f"welcome to {rng.choice(CITIES)}, {rng.choice(NAMES)}!"
    return f"{rng.choice(FRUITS)} and {rng.choice(FRUITS)} from the {rng.choice(NOUNS)}"


# --------------------------------------------------------------------------- 9. uppercase


def _uppercase(rng: random.Random) -> Instance:
    text = _phrase(rng)
    if rng.random() < 0.3:
        text = text.title()
    upper = text.upper()
    return Instance(
        slots={}, output=upper, check=_string_check(upper, keep_case=True), context=text
    )


register_family(
    "uppercase",
    "transformation",
    [
        "Rewrite the text in all capital letters. Change nothing else.",
        "Convert the following phrase to uppercase and output only the result.",
        "Make every letter of this text upper case, keeping the words, spacing and punctuation "
        "the same.",
        "Return the input text in UPPERCASE, with no other words.",
        "Write the phrase below entirely in capital letters, as if you were shouting it. Reply "
        "with the phrase only.",
        "Change all lowercase letters in the text to uppercase. Reply with the converted text "
        "only.",
        "Uppercase conversion: output the given text with every letter in upper case.",
    ],
    _uppercase,
    "a short phrase (context) -> the phrase in upper case (case-sensitive check)",
)

# --------------------------------------------------------------------------- 10. lowercase


def _lowercase(rng: random.Random) -> Instance:
    text = _phrase(rng)
    text = text.upper() if rng.random() < 0.5 else text.title()
    lower = text.lower()
    return Instance(slots={"text": text}, output=lower, check=_string_check(lower, keep_case=True))


register_family(
    "lowercase",
    "transformation",
    [
        'Convert "{text}" to lowercase. Reply with the result only.',
        "Rewrite this in all small letters, changing nothing else: {text}",
        'What is "{text}" written entirely in lower case? Give just the text.',
        "Make every letter of the following text lowercase and output it: {text}",
        'Lowercase the phrase "{text}", keeping its words, spaces and punctuation unchanged. '
        "Output only the phrase.",
        'Please turn all capital letters in "{text}" into small letters and answer with the new '
        "text only.",
        "Input: {text}\nTask: lowercase it. Output only the lowercased text.",
    ],
    _lowercase,
    "a short phrase in upper or title case -> the phrase in lower case (case-sensitive check)",
)

# --------------------------------------------------------------------------- 11. reverse_word


def _reverse_word(rng: random.Random) -> Instance:
    word = rng.choice(WORDS)
    return Instance(slots={"word": word}, output=word[::-1], check=_string_check(word[::-1]))


register_family(
    "reverse_word",
    "transformation",
    [
        'Reverse the word "{word}". Answer with the reversed word only.',
        'Write "{word}" backwards. Only the reversed word, please.',
        "Spell the letters of {word} in reverse order, as a single word with nothing else.",
        'What do you get when you read "{word}" from right to left? Reply with just that string.',
        "Take the word {word} and output it with its letters in the opposite order.",
        "Reverse the characters: {word}",
        'Give me the reverse of "{word}" and no explanation.',
    ],
    _reverse_word,
    "a word (no palindromes) -> the word reversed",
)

# --------------------------------------------------------------------------- 12. reverse_list

_ITEM_POOLS = (FRUITS, ANIMALS, COLOURS, CITIES, NAMES, JOBS)


def _reverse_list(rng: random.Random) -> Instance:
    items = rng.sample(rng.choice(_ITEM_POOLS), rng.randint(3, 6))
    output, check = _list_check(items[::-1])
    return Instance(slots={"items": ", ".join(items)}, output=output, check=check)


register_family(
    "reverse_list",
    "transformation",
    [
        "Reverse the order of this list: {items}. Answer with the items separated by commas.",
        "Here is a comma-separated list: {items}. Write it again from the last item to the "
        "first, comma-separated.",
        "List these items in the opposite order, keeping the commas between them: {items}",
        "What is the list {items} when read backwards item by item? Reply with a "
        "comma-separated list only.",
        "Put the last item first and the first item last, reversing the whole list: {items}. "
        "Output the reversed list separated by commas.",
        "Reverse the sequence {items} (the order of the items, not their letters), giving a "
        "comma-separated answer.",
        "Items: {items}\nReturn them in reverse order, separated by commas, with no other text.",
    ],
    _reverse_list,
    "3-6 distinct words -> the same words in reverse order, comma-separated",
)

# --------------------------------------------------------------------------- 13. sort_numbers


def _sort_numbers(rng: random.Random) -> Instance:
    numbers = rng.sample(range(-50, 201), rng.randint(4, 7))
    if rng.random() < 0.3:
        numbers.append(rng.choice(numbers))  # a repeated number stays in the sorted answer
    while numbers == sorted(numbers):  # an already sorted input would be answered by echoing it
        rng.shuffle(numbers)
    output, check = _list_check(sorted(numbers))
    return Instance(
        slots={}, output=output, check=check, context=", ".join(str(n) for n in numbers)
    )


register_family(
    "sort_numbers",
    "transformation",
    [
        "Sort the numbers below in ascending order. Answer with the sorted numbers separated by "
        "commas.",
        "Arrange these numbers from smallest to largest and output them as a comma-separated list.",
        "Put the following list of numbers in increasing order. Reply with the list only, "
        "separated by commas.",
        "Order the numbers from lowest to highest. Give a comma-separated answer with no other "
        "text.",
        "Return the given numbers sorted in ascending order, separated by commas.",
        "What order do these numbers have when sorted from least to greatest? Write them out, "
        "comma-separated.",
        "Sort ascending (keep any repeated numbers) and write the result as comma-separated "
        "values.",
    ],
    _sort_numbers,
    "4-8 integers, some negative (context) -> sorted ascending, comma-separated",
)

# --------------------------------------------------------------------------- 14. sort_words


def _sort_words(rng: random.Random) -> Instance:
    words = rng.sample(WORDS, rng.randint(4, 7))
    while words == sorted(words):
        rng.shuffle(words)
    output, check = _list_check(sorted(words))
    return Instance(slots={"words": ", ".join(words)}, output=output, check=check)


register_family(
    "sort_words",
    "transformation",
    [
        "Sort these words alphabetically: {words}. Answer with the sorted words separated by "
        "commas.",
        "Put the following words in alphabetical order and list them with commas between them: "
        "{words}",
        "Arrange {words} from A to Z. Reply with a comma-separated list only.",
        "What is the alphabetical ordering of the words {words}? Give them separated by commas.",
        "Words: {words}\nReturn these words sorted in dictionary order, comma-separated, with "
        "nothing else.",
        "Alphabetize the list {words} and output the result as comma-separated words.",
        "Order the words {words} as they would appear in a dictionary. Write only the ordered "
        "list, separated by commas.",
    ],
    _sort_words,
    "4-7 distinct lowercase words -> sorted alphabetically, comma-separated",
)

# --------------------------------------------------------------------------- 15. dedup_list


def _dedup_list(rng: random.Random) -> Instance:
    pool = rng.sample(rng.choice(_ITEM_POOLS), rng.randint(3, 5))
    items = [rng.choice(pool) for _ in range(rng.randint(5, 9))]
    unique = list(dict.fromkeys(items))
    while len(unique) == len(items):  # at least one repeat, or the task is an echo
        items.append(rng.choice(pool))
    output, check = _list_check(unique)
    return Instance(slots={}, output=output, check=check, context=", ".join(items))


register_family(
    "dedup_list",
    "transformation",
    [
        "Remove the duplicate items from this list, keeping the first occurrence of each item in "
        "its original order. Answer with a comma-separated list.",
        "Some items in the list below are repeated. Write the list with every item appearing "
        "only once, in the order of first appearance, separated by commas.",
        "Deduplicate the following comma-separated list. Keep the original order and output "
        "only the result.",
        "Return the unique items of this list in the order they first appear, separated by commas.",
        "Delete every repeat from the list so that each item appears once; do not sort it. Give "
        "the comma-separated list only.",
        "Which distinct items does the list contain? List them once each, in order of first "
        "appearance, separated by commas.",
        "Keep the first copy of each item and drop later copies. Output the shortened list with "
        "commas between items.",
    ],
    _dedup_list,
    "a comma-separated list with repeats (context) -> first occurrences in order",
)

# --------------------------------------------------------------------------- 16. unit_conversion

# (source unit, target unit, factor); a negative factor means "divide by", so every answer is
# a whole number.
_CONVERSIONS = (
    ("kilometers", "meters", 1000),
    ("meters", "kilometers", -1000),
    ("kilograms", "grams", 1000),
    ("grams", "kilograms", -1000),
    ("hours", "minutes", 60),
    ("minutes", "hours", -60),
    ("centimeters", "millimeters", 10),
    ("millimeters", "centimeters", -10),
    ("meters", "centimeters", 100),
    ("liters", "milliliters", 1000),
    ("minutes", "seconds", 60),
)


def _unit_conversion(rng: random.Random) -> Instance:
    source, target, factor = rng.choice(_CONVERSIONS)
    if factor > 0:
        value = rng.randint(2, 99)
        answer = value * factor
    else:
        answer = rng.randint(2, 99)
        value = answer * -factor
    return Instance(
        slots={"value": value, "source": source, "target": target},
        output=str(answer),
        check=_number_check(answer),
        system=rng.choice(
            (
                "You are a precise unit converter. Reply with a bare number.",
                "You are a calculator for units of measurement.",
                "You help with unit conversions and keep answers as short as possible.",
            )
        ),
    )


register_family(
    "unit_conversion",
    "transformation",
    [
        "Convert {value} {source} to {target}. Answer with the number only.",
        "How many {target} are there in {value} {source}? Reply with just the number.",
        "{value} {source} is equal to how many {target}? Give only the number, without units.",
        "Express {value} {source} in {target}. Write the numeric answer and nothing else.",
        "Unit conversion: {value} {source} = ? {target}. Output the number only.",
        "If a quantity is {value} {source}, what is it in {target}? Respond with a bare number.",
        "Please change {value} {source} into {target} and tell me only the resulting number.",
    ],
    _unit_conversion,
    "metric length/mass/volume and time conversions with whole-number answers",
)

# --------------------------------------------------------------------------- 17. csv_to_json


def _csv_row(rng: random.Random, schema: int, key: str) -> dict[str, Any]:
    if schema == 0:
        return {"name": key, "age": rng.randint(18, 90), "city": rng.choice(CITIES)}
    if schema == 1:
        return {
            "item": key,
            "price": round(rng.randint(0, 19) + rng.choice((0.25, 0.5, 0.75, 0.99)), 2),
            "quantity": rng.randint(1, 40),
        }
    if schema == 2:
        return {"city": key, "temperature": rng.randint(-15, 38)}
    if schema == 3:
        return {"animal": key, "weight": rng.randint(1, 900), "color": rng.choice(COLOURS)}
    return {"name": key, "job": rng.choice(JOBS), "years": rng.randint(1, 40)}


_CSV_KEYS = (NAMES, FRUITS, CITIES, ANIMALS, NAMES)  # the first column's values, by schema


def _csv_to_json(rng: random.Random) -> Instance:
    schema = rng.randrange(len(_CSV_KEYS))
    rows = [_csv_row(rng, schema, key) for key in rng.sample(_CSV_KEYS[schema], rng.randint(2, 3))]
    lines = [",".join(rows[0])] + [",".join(str(v) for v in row.values()) for row in rows]
    output, check = _json_answer(rows)
    return Instance(slots={}, output=output, check=check, context="\n".join(lines))


register_family(
    "csv_to_json",
    "transformation",
    [
        "Convert the CSV below into a JSON array with one object per row, using the header as "
        "keys. Write numbers as JSON numbers. Output only the JSON.",
        "Turn this CSV table into JSON: an array of objects keyed by the column names. Numeric "
        "cells must be numbers, not strings.",
        "Here is some CSV data. Return it as a JSON list of row objects, with numbers as numbers.",
        "Parse the following comma-separated table and output it as a JSON array of objects, one "
        "per data row.",
        "Rewrite the CSV as JSON. Each row becomes an object whose keys are the header fields; "
        "keep numbers numeric.",
        "Give me the JSON equivalent of this CSV: a list of objects, with numeric values as "
        "numbers and text as strings. No other text.",
        "CSV to JSON conversion. Use the first line as keys and produce one object per remaining "
        "line, as a JSON array.",
    ],
    _csv_to_json,
    "a 2-3 row CSV with a header (context) -> JSON array of objects, numbers as numbers",
)

# --------------------------------------------------------------------------- 18. count_words

_PLACES = ("near", "behind", "past", "beside", "under")
_TIMES = (
    "every morning", "on Sunday", "after lunch", "before the storm", "at night",
    "in the early spring", "today",
)  # fmt: skip
_ADVERBS = ("slowly", "quietly", "happily", "again", "carefully", "proudly")


def _count_words(rng: random.Random) -> Instance:
    if rng.random() < 0.5:
        subject = rng.choice(NAMES)
    else:
        subject = f"the {rng.choice(ADJECTIVES)} {rng.choice(ANIMALS)}"
    parts = [subject, rng.choice(VERBS)]
    if rng.random() < 0.5:
        parts.append(rng.choice(_ADVERBS))
    if rng.random() < 0.7:
        adjective = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.5 else ""
        parts.append(f"{rng.choice(_PLACES)} the {adjective}{rng.choice(NOUNS)}")
    if rng.random() < 0.6:
        parts.append(rng.choice(_TIMES))
    sentence = " ".join(parts)
    sentence = sentence[0].upper() + sentence[1:] + "."
    n = len(sentence.split())
    return Instance(slots={}, output=str(n), check=_number_check(n), context=sentence)


register_family(
    "count_words",
    "counting",
    [
        "How many words are in the sentence below? Answer with the number only.",
        "Count the words in this text and reply with just the count.",
        "Tell me the number of words in the following sentence. Give only the number.",
        "What is the word count of this text? Respond with a single number.",
        "Count how many space-separated words the sentence contains. Output the number and "
        "nothing else.",
        "Word count: give the total number of words in the input as a bare number.",
        "Number of words in the text? One number, please.",
    ],
    _count_words,
    "a simple sentence of 2-13 words (context) -> its word count",
)

# --------------------------------------------------------------------------- 19. count_letter


def _count_letter(rng: random.Random) -> Instance:
    text = " ".join(rng.sample(WORDS, rng.choice((1, 1, 2, 3))))
    present = sorted(set(text) - {" "})
    if rng.random() < 0.85:
        letter = rng.choice(present)
    else:  # sometimes the right answer is 0
        letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in present])
    n = text.count(letter)
    return Instance(slots={"letter": letter, "text": text}, output=str(n), check=_number_check(n))


register_family(
    "count_letter",
    "counting",
    [
        'How many times does the letter "{letter}" appear in "{text}"? Answer with the number '
        "only.",
        'Count the occurrences of "{letter}" in "{text}". Reply with just the count.',
        'In the text "{text}", how often does the letter {letter} occur? Give only the number.',
        'Tell me how many "{letter}" letters there are in "{text}", as a bare number.',
        'Letter count: the letter is {letter}, the text is "{text}". Output the count and '
        "nothing else.",
        'Look at "{text}" and count every "{letter}" in it. Respond with a single number.',
        'What is the number of times "{letter}" occurs in "{text}"? Write just the number.',
    ],
    _count_letter,
    "a lowercase word or phrase and a letter -> how many times the letter occurs (may be 0)",
)

# --------------------------------------------------------------------------- 20. caesar_shift


def caesar(text: str, shift: int) -> str:
    """Shift lowercase letters `shift` places forward, wrapping z to a; other characters stay."""
    return "".join(
        chr((ord(c) - ord("a") + shift) % 26 + ord("a")) if "a" <= c <= "z" else c for c in text
    )


def _caesar_shift(rng: random.Random) -> Instance:
    word = rng.choice(WORDS)
    shift = rng.randint(1, 3)
    encoded = caesar(word, shift)
    return Instance(
        slots={"word": word, "shift": shift},
        output=encoded,
        check=_string_check(encoded),
        system=rng.choice(
            (
                "You are a cipher assistant. You answer with the encoded text only.",
                "You help people encode messages with classical ciphers.",
                "You are a puzzle helper who never explains unless asked.",
            )
        ),
    )


register_family(
    "caesar_shift",
    "cipher",
    [
        'Apply a Caesar shift of {shift} to the word "{word}": move each letter {shift} places '
        "forward in the alphabet, wrapping from z back to a. Answer with the shifted word only.",
        'Encrypt "{word}" with a Caesar cipher that shifts every letter forward by {shift}. '
        "Reply with the ciphertext only.",
        "Shift each letter of {word} forward by {shift} positions in the alphabet (z wraps "
        "around to a). What is the result? Give just the word.",
        "Caesar cipher, key {shift}: encode {word}. Output only the encoded word.",
        'Replace every letter in "{word}" with the letter {shift} steps later in the alphabet, '
        "wrapping around after z. Write the new word and nothing else.",
        'Using a forward shift of {shift}, encrypt the word "{word}" with the Caesar cipher. '
        "Only the result, please.",
        'Move each letter of "{word}" ahead by {shift} in the alphabet (with a shift of 1, a '
        "becomes b and z becomes a). What word do you get? Reply with it alone.",
    ],
    _caesar_shift,
    "a lowercase word and a shift of 1-3 -> the Caesar-shifted word",
)

# --------------------------------------------------------------------------- 21. rot13


def _rot13(rng: random.Random) -> Instance:
    text = " ".join(rng.sample(WORDS, rng.choice((1, 2))))
    encoded = codecs.encode(text, "rot13")
    return Instance(slots={"text": text}, output=encoded, check=_string_check(encoded))


register_family(
    "rot13",
    "cipher",
    [
        'Apply ROT13 to "{text}". Answer with the result only.',
        'Encode "{text}" with the ROT13 cipher and reply with just the encoded text.',
        'Rotate every letter of "{text}" by 13 places in the alphabet (ROT13). What do you get? '
        "Give only the output.",
        "ROT13: {text}\nWrite the ROT13 encoding and nothing else.",
        'Replace each letter in "{text}" with the letter 13 positions after it, wrapping around '
        "the alphabet and keeping spaces as they are. Output the new text.",
        "What is the ROT13 version of {text}? Respond with the transformed text alone.",
        "Encrypt the following with ROT13, keeping spaces unchanged, and answer with the "
        "ciphertext only: {text}",
    ],
    _rot13,
    "one or two lowercase words -> their ROT13 encoding",
)

# --------------------------------------------------------------------------- 22. acronym

_ORG_OPENERS = (
    "National", "Global", "United", "Royal", "Northern", "Advanced", "Open", "Central",
    "Pacific", "Digital", "Modern", "Independent",
)  # fmt: skip
_ORG_FIELDS = (
    "Space", "Health", "Energy", "Ocean", "Robotics", "Music", "Language", "Wildlife",
    "Climate", "Transport", "Software", "Film",
)  # fmt: skip
_ORG_KINDS = ("Research", "Science", "Safety", "Trade", "Education", "Design")
_ORG_TYPES = (
    "Agency", "Institute", "Council", "Association", "Society", "Foundation", "Network",
    "Union", "Laboratory", "Alliance",
)  # fmt: skip


def _acronym(rng: random.Random) -> Instance:
    words = [rng.choice(_ORG_OPENERS), rng.choice(_ORG_FIELDS)]
    if rng.random() < 0.5:
        words.append(rng.choice(_ORG_KINDS))
    words.append(rng.choice(_ORG_TYPES))
    name = " ".join(words)
    if rng.random() < 0.3:  # the answer must be upper case even when the name is not
        name = name.lower()
    initials = "".join(w[0] for w in words).upper()
    check = Check("exact_match", initials, {"normalize": ["strip_punctuation", "strip"]})
    return Instance(slots={"name": name}, output=initials, check=check)


register_family(
    "acronym",
    "transformation",
    [
        'Write the acronym of "{name}" using the first letter of each word in capitals. Answer '
        "with the acronym only.",
        "What is the acronym for {name}? Reply with just the capital letters.",
        'Form an abbreviation from the initial letter of every word in "{name}". Use uppercase '
        "letters, no dots and no other text.",
        "Take the first letter of each word of {name}, capitalise them and join them together. "
        "Output only the result.",
        'Acronym of "{name}"? Give the uppercase initials only.',
        'Abbreviate "{name}" to its initials in upper case, written as one word.',
        "Make an all-caps acronym out of the name {name}, one letter per word. Nothing else.",
    ],
    _acronym,
    "a 3-4 word organisation name -> its upper-case initials (case-sensitive check)",
)

# --------------------------------------------------------------------------- 23. spell_out

# The phrasings give d-o-g and s-u-n as examples, so those words are never asked.
_SPELL_WORDS = tuple(w for w in WORDS if w not in ("dog", "sun"))


def _spell_out(rng: random.Random) -> Instance:
    word = rng.choice(_SPELL_WORDS)
    spelled = "-".join(word)
    return Instance(slots={"word": word}, output=spelled, check=_string_check(spelled))


register_family(
    "spell_out",
    "transformation",
    [
        'Spell the word "{word}" letter by letter, separating the letters with hyphens (for '
        "example, d-o-g). Answer with the spelling only.",
        'Write out the letters of "{word}" one at a time with a hyphen between each pair of '
        "letters, and nothing else.",
        "How do you spell {word}? Give the letters joined by hyphens, like s-u-n, and nothing "
        "else.",
        'Split "{word}" into its individual letters and join them with "-". Output only the '
        "result.",
        "Spell out {word} using hyphens between the letters. Reply with the hyphenated spelling "
        "only.",
        'Hyphenated spelling of "{word}"? Output only the letters separated by hyphens.',
        "List each letter of the word {word} in order, separated by hyphens, with no spaces.",
    ],
    _spell_out,
    "a word -> its letters joined by hyphens (c-a-t)",
)
