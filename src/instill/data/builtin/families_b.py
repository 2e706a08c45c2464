"""Built-in families, part B: word problems, short QA, key sentences, format constraints, code
tracing and multi-turn follow-ups.

Every family follows the same recipe: small word lists defined here, a generator that draws one
instance from a seeded `random.Random`, at least six phrasings, and a check that is an honest,
strict test of the instruction. Phrasings that ask for "just the number" or "only the name" are
scored with `exact_match` (case and surrounding whitespace ignored; a number may carry one final
full stop), so an answer that wraps the right value in a sentence scores 0. The constrained
families are scored only by the constraints the phrasing states, plus, where an empty or
off-topic answer would otherwise pass, an `include_keywords` constraint on the subject the
phrasing names (documented per family).

The row renderer puts `context` after the instruction, so phrasings say "below" or "the
following", never "above".

Design choices worth knowing:

- `key_sentence`: every passage is built so that exactly one sentence names the topic and makes
  a general claim about it; the other sentences are concrete details (numbers, examples) that
  never name the topic. That sentence is the key sentence, by construction.
- `code_arith_output` programs are built as a tiny statement tree (assign, augmented assign,
  `for` over `range`, `if`/`else`, `print`) that is both rendered as Python and evaluated by
  `_run`, our own interpreter of that tree; nothing is `exec`uted. The tests cross-check `_run`
  against real Python.
- Multi-turn families put the earlier exchange in `history`; the phrased instruction is the last
  user turn, so their phrasings have no placeholders and vary with the history.
"""

from __future__ import annotations

import json
import operator
import random
from collections.abc import Callable
from typing import Any

from instill.data.builtin.core import Check, Instance, register_family

# --------------------------------------------------------------------------- shared word lists

NAMES = (
    "Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Kira", "Leo", "Maya", "Nico", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara",
)  # fmt: skip
COUNTABLES = (
    "apples", "pencils", "stickers", "marbles", "cookies", "stamps", "shells", "cards",
    "coins", "balloons", "oranges", "books", "buttons", "crayons",
)  # fmt: skip
CITIES = (
    "Lisbon", "Oslo", "Nairobi", "Lima", "Hanoi", "Dublin", "Quebec", "Porto", "Krakow",
    "Seoul", "Cairo", "Perth", "Austin", "Bergen", "Kyoto",
)  # fmt: skip
# (past tense, base form) of the story events used by the QA families.
EVENTS = (
    ("opened a bakery", "open a bakery"),
    ("started a band", "start a band"),
    ("learned to sail", "learn to sail"),
    ("bought a red bicycle", "buy a red bicycle"),
    ("finished a first novel", "finish a first novel"),
    ("won a chess prize", "win a chess prize"),
    ("planted an orchard", "plant an orchard"),
    ("built a small boat", "build a small boat"),
    ("ran a marathon", "run a marathon"),
    ("painted a large mural", "paint a large mural"),
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": (
        "apple", "banana", "cherry", "mango", "pear", "plum", "kiwi", "grape", "peach",
        "lemon", "apricot", "melon",
    ),
    "vegetables": (
        "carrot", "potato", "onion", "spinach", "broccoli", "cabbage", "leek", "pea",
        "lettuce", "celery", "radish", "pumpkin",
    ),
    "animals": (
        "dog", "cat", "horse", "rabbit", "lion", "tiger", "zebra", "elephant", "giraffe",
        "wolf", "fox", "bear",
    ),
    "colours": (
        "red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black",
        "white", "grey", "teal",
    ),
    "countries": (
        "France", "Japan", "Brazil", "Kenya", "Canada", "India", "Norway", "Mexico",
        "Egypt", "Chile", "Spain", "Vietnam",
    ),
    "musical instruments": (
        "piano", "guitar", "violin", "drums", "flute", "trumpet", "cello", "harp",
        "clarinet", "saxophone", "banjo", "oboe",
    ),
    "sports": (
        "football", "tennis", "swimming", "rugby", "cycling", "rowing", "golf", "boxing",
        "hockey", "cricket", "skiing", "volleyball",
    ),
    "birds": (
        "robin", "sparrow", "eagle", "owl", "parrot", "pigeon", "swan", "crow", "penguin",
        "flamingo", "heron", "falcon",
    ),
    "flowers": (
        "rose", "tulip", "daisy", "lily", "orchid", "sunflower", "poppy", "daffodil",
        "lavender", "iris", "peony", "violet",
    ),
    "vehicles": (
        "car", "bus", "train", "bicycle", "tram", "truck", "scooter", "taxi", "van",
        "motorbike", "ferry", "tractor",
    ),
    "tools": (
        "hammer", "saw", "drill", "wrench", "chisel", "screwdriver", "pliers", "spanner",
        "shovel", "rake", "ladder", "file",
    ),
    "trees": (
        "oak", "birch", "maple", "pine", "willow", "cedar", "elm", "beech", "ash", "spruce",
        "palm", "yew",
    ),
}  # fmt: skip
# Subjects for the free-writing families; each is used literally as a keyword.
TOPICS = (
    "rain", "music", "trains", "gardens", "tea", "snow", "bicycles", "dogs", "books",
    "mountains", "coffee", "football", "libraries", "rivers", "birds", "bread", "chess",
    "painting", "cooking", "autumn", "islands", "bridges", "clocks", "kites", "stars",
    "forests", "cats", "puzzles", "gardening", "dancing", "bees", "lighthouses", "festivals",
    "markets", "sailing", "chocolate",
)  # fmt: skip
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")

# Shared normalisations: answers that are words or names may differ in case, surrounding
# quotes and a final full stop; numbers only in case and whitespace (stripping punctuation
# would turn "-5" into "5").
_WORD_NORMALIZE = ["strip", "collapse_whitespace", "lowercase", "strip_punctuation"]


def _number_check(value: int | str) -> Check:
    """Exact match on a bare number; one final full stop ("19.") is also accepted."""
    text = str(value)
    return Check("exact_match", reference=[text, text + "."])


def _word_check(answer: str) -> Check:
    """Exact match on a word, name or place; case, quotes and punctuation are ignored."""
    return Check("exact_match", reference=answer, options={"normalize": list(_WORD_NORMALIZE)})


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


# --------------------------------------------------------------------------- arithmetic

_ADD_PROBLEMS = (
    "{name} has {a} {items} and buys {b} more. How many {items} does {name} have now?",
    "{name} picked {a} {items} in the morning and {b} in the afternoon. How many {items} did "
    "{name} pick in total?",
    "There are {a} {items} in a box. {name} puts in {b} more. How many {items} are in the box now?",
    "{name} had {a} {items}. A friend gave {name} another {b}. How many {items} does {name} have?",
    "{name} read {a} pages on Monday, {b} on Tuesday and {c} on Wednesday. How many pages did "
    "{name} read altogether?",
    "A class collected {a} {items} last week and {b} this week. How many {items} has the class "
    "collected so far?",
)


def _add_word_problem(rng: random.Random) -> Instance:
    template = rng.choice(_ADD_PROBLEMS)
    a, b, c = rng.randint(2, 99), rng.randint(2, 60), rng.randint(2, 40)
    total = a + b + (c if "{c}" in template else 0)
    problem = template.format(name=rng.choice(NAMES), items=rng.choice(COUNTABLES), a=a, b=b, c=c)
    return Instance(slots={}, output=str(total), check=_number_check(total), context=problem)


register_family(
    "add_word_problem",
    "arithmetic",
    [
        "Solve the word problem below. Reply with just the number.",
        "How many are there in the end? Give only the final number, with no working.",
        "Read the following problem and answer with a single number and nothing else.",
        "Work out the answer to this addition problem. Your reply must be only the number.",
        "Answer the question in the text below. Output the number alone.",
        "What is the total? Respond with the number only: no words, no units.",
        "Compute the result of the story problem that follows and write just the numeric answer.",
    ],
    _add_word_problem,
    "A short addition story problem (in the context); the answer is the total as a bare number.",
)

_SUBTRACT_PROBLEMS = (
    "{name} has {a} {items} and gives {b} to a friend. How many {items} does {name} have left?",
    "{name} baked {a} cookies and the family ate {b} of them. How many cookies are left?",
    "A shelf holds {a} {items}. {name} takes away {b}. How many {items} remain on the shelf?",
    "{name} had {a} {items} but lost {b} on the way home. How many {items} does {name} have now?",
    "A bus has {a} passengers. At the next stop, {b} passengers get off. How many passengers are "
    "still on the bus?",
    "{name} wants to collect {a} {items} and already has {b}. How many more {items} does {name} "
    "need?",
)


def _subtract_word_problem(rng: random.Random) -> Instance:
    a = rng.randint(10, 120)
    b = rng.randint(1, a - 1)
    problem = rng.choice(_SUBTRACT_PROBLEMS).format(
        name=rng.choice(NAMES), items=rng.choice(COUNTABLES), a=a, b=b
    )
    return Instance(slots={"problem": problem}, output=str(a - b), check=_number_check(a - b))


register_family(
    "subtract_word_problem",
    "arithmetic",
    [
        "{problem} Reply with just the number.",
        "Solve this: {problem}\nAnswer with the number only.",
        "Here is a subtraction word problem.\n\n{problem}\n\nWrite only the final number.",
        "Answer the following question with a single number and no explanation: {problem}",
        "Word problem: {problem} What is the answer? Give just the number, nothing else.",
        "Please work this out and respond with the numeric answer alone.\n{problem}",
    ],
    _subtract_word_problem,
    "A short subtraction story problem; the answer is what is left, as a bare number.",
)


def _multiply(rng: random.Random) -> Instance:
    a, b = rng.randint(2, 20), rng.randint(2, 12)
    return Instance(slots={"a": a, "b": b}, output=str(a * b), check=_number_check(a * b))


register_family(
    "multiply",
    "arithmetic",
    [
        "What is {a} times {b}? Reply with just the number.",
        "Multiply {a} by {b}. Answer with the product only.",
        "{a} x {b} = ? Give only the result.",
        "Compute the product of {a} and {b} and write the number alone.",
        "If you have {a} groups of {b}, how many is that in total? Respond with only the number.",
        "Calculate {a} * {b}. No explanation, just the answer.",
    ],
    _multiply,
    "Multiply two small whole numbers (2-20 by 2-12); the answer is the bare product.",
)


def _compare_numbers(rng: random.Random) -> Instance:
    kind = rng.random()
    if kind < 0.3:  # decimals with the same whole part: 4.5 against 4.45
        whole, tenths = rng.randint(0, 99), rng.randint(1, 9)
        hundredths = rng.choice([h for h in range(11, 100) if h % 10])
        a, b = f"{whole}.{tenths}", f"{whole}.{hundredths:02d}"
    elif kind < 0.6:  # close whole numbers
        x = rng.randint(10, 990)
        a, b = str(x), str(x + rng.randint(1, 9))
    else:
        x, y = rng.sample(range(1, 1000), 2)
        a, b = str(x), str(y)
    if rng.random() < 0.5:
        a, b = b, a
    larger = a if float(a) > float(b) else b
    return Instance(slots={"a": a, "b": b}, output=larger, check=_number_check(larger))


register_family(
    "compare_numbers",
    "arithmetic",
    [
        "Which is larger, {a} or {b}? Reply with just the number.",
        "Of the two numbers {a} and {b}, write the bigger one and nothing else.",
        "Here are two numbers: {a} and {b}. Output only the greater of them.",
        "Is {a} or {b} the larger number? Answer with that number alone.",
        "Pick the maximum of {a} and {b}. Give the number only, without explanation.",
        "Compare {a} with {b} and respond with whichever is greater, as a bare number.",
    ],
    _compare_numbers,
    "Which of two numbers (whole or decimal, sometimes close) is larger; answer that number.",
)


def _max_of_list(rng: random.Random) -> Instance:
    top = rng.choice([99, 999])
    numbers = rng.sample(range(1, top + 1), rng.randint(4, 8))
    context = rng.choice([", ", " ", "\n"]).join(map(str, numbers))
    return Instance(
        slots={}, output=str(max(numbers)), check=_number_check(max(numbers)), context=context
    )


register_family(
    "max_of_list",
    "arithmetic",
    [
        "What is the largest number in the list below? Reply with just the number.",
        "Find the maximum value among the following numbers and output only that number.",
        "Which of these numbers is the biggest? Answer with the number alone.",
        "Look at the numbers below and give the highest one, nothing else.",
        "Return the greatest number from the following list, written as a bare number.",
        "Out of the following numbers, which is the largest? Respond with only that number, "
        "no explanation.",
    ],
    _max_of_list,
    "The largest of 4-8 distinct numbers given in the context.",
)


def _next_in_sequence(rng: random.Random) -> Instance:
    start = rng.randint(-10, 40)
    step = rng.choice([s for s in range(-7, 13) if s])
    terms = [start + k * step for k in range(rng.randint(4, 6))]
    nxt = terms[-1] + step
    context = ", ".join(map(str, terms)) + rng.choice(["", ", ?", ", ..."])
    return Instance(slots={}, output=str(nxt), check=_number_check(nxt), context=context)


register_family(
    "next_in_sequence",
    "arithmetic",
    [
        "What number comes next in this sequence? Reply with just the number.",
        "Continue the pattern below: give the next term only.",
        "The numbers below change by the same amount each time. Write the next one and nothing "
        "else.",
        "Find the next number in the following arithmetic sequence. Output only that number.",
        "Which number should follow the last one shown below? Answer with the number alone.",
        "Predict the term after the last one in this list. Respond with a bare number, no "
        "explanation.",
    ],
    _next_in_sequence,
    "The next term of an arithmetic progression (4-6 terms, step -7..12, never 0).",
)

LENGTH_WORDS = (
    "cat", "sun", "map", "tree", "lamp", "frog", "house", "river", "apple", "garden",
    "window", "pencil", "planet", "kitchen", "blanket", "dolphin", "elephant", "umbrella",
    "mountain", "chocolate", "butterfly", "adventure", "strawberry", "basketball",
    "grasshopper", "ox", "jam", "moon", "cloud", "tomato",
)  # fmt: skip


def _longer_word(rng: random.Random) -> Instance:
    a = rng.choice(LENGTH_WORDS)
    b = rng.choice([w for w in LENGTH_WORDS if len(w) != len(a)])
    longer = a if len(a) > len(b) else b
    return Instance(slots={"a": a, "b": b}, output=longer, check=_word_check(longer))


register_family(
    "longer_word",
    "arithmetic",
    [
        'Which word has more letters, "{a}" or "{b}"? Reply with just the word.',
        "Compare the lengths of {a} and {b}. Write only the longer word.",
        "Here are two words: {a}, {b}. Output the one that is longer, and nothing else.",
        'Of "{a}" and "{b}", which is the longer word? Answer with that word alone.',
        "Count the letters in {a} and in {b}, then give only the word with more letters.",
        "Tell me the longer of these two words, with no explanation: {a} / {b}",
    ],
    _longer_word,
    "Which of two words (never the same length) has more letters; answer that word.",
)

# --------------------------------------------------------------------------- short QA over a story

_EVENT_SENTENCES = (
    "In {year}, {person} {event} in {city}.",
    "{person} {event} in {city} in {year}.",
    "Back in {year}, {person} travelled to {city} and {event} there.",
)


def _story(rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """A 2-4 sentence story about two people; returns it and each person's facts.

    Each person did one distinct event in one city in one year; the optional extra sentences
    add a third city or year as a distractor but never a second event.
    """
    people = rng.sample(NAMES, 2)
    cities = rng.sample(CITIES, 3)
    years = rng.sample(range(1950, 2024), 3)
    events = rng.sample(EVENTS, 2)
    facts = [
        {"person": p, "city": c, "year": y, "past": e[0], "base": e[1]}
        for p, c, y, e in zip(people, cities, years, events, strict=False)
    ]
    sentences = [
        rng.choice(_EVENT_SENTENCES).format(
            person=f["person"], event=f["past"], city=f["city"], year=f["year"]
        )
        for f in facts
    ]
    p1, p2 = rng.sample(people, 2)
    extras = [
        f"{p1} and {p2} first met at school.",
        f"{p1} grew up in {cities[2]}.",
        f"{p1} was born in {years[2]}.",
        f"{p2} often visits {p1} in the summer.",
        "Neither of them had planned it in advance.",
    ]
    for extra in rng.sample(extras, rng.randint(0, 2)):
        sentences.insert(rng.randint(0, len(sentences)), extra)
    return " ".join(sentences), facts


def _qa_who(rng: random.Random) -> Instance:
    story, facts = _story(rng)
    f = rng.choice(facts)
    question = rng.choice(["Who {past}?", "Who {past} in {city}?", "Which person {past}?"])
    return Instance(
        slots={"question": question.format(**f)},
        output=f["person"],
        check=_word_check(f["person"]),
        context=story,
    )


def _qa_where(rng: random.Random) -> Instance:
    story, facts = _story(rng)
    f = rng.choice(facts)
    question = rng.choice(
        [
            "Where did {person} {base}?",
            "In which city did {person} {base}?",
            "Where was it that {person} {past}?",
        ]
    )
    return Instance(
        slots={"question": question.format(**f)},
        output=f["city"],
        check=_word_check(f["city"]),
        context=story,
    )


def _qa_when(rng: random.Random) -> Instance:
    story, facts = _story(rng)
    f = rng.choice(facts)
    question = rng.choice(
        [
            "In which year did {person} {base}?",
            "When did {person} {base}?",
            "What year was it when {person} {past}?",
        ]
    )
    year = str(f["year"])
    return Instance(
        slots={"question": question.format(**f)},
        output=year,
        check=_number_check(year),
        context=story,
    )


register_family(
    "qa_who",
    "qa",
    [
        "Read the story below and answer the question: {question} Reply with just the name.",
        "{question} Answer using only the person's name from the following text.",
        "Question about the passage below: {question}\nGive the name alone.",
        "Using the story that follows, answer with a single name and nothing else. {question}",
        "Find the answer in the story below. {question} Just the name, please.",
        "Answer from the text. Question: {question} Output only the name.",
        "Look at the short story below and tell me: {question} (one name, nothing else)",
    ],
    _qa_who,
    "Who did something in a 2-4 sentence story about two people; answer the name.",
)
register_family(
    "qa_where",
    "qa",
    [
        "Read the story below and answer the question: {question} Reply with just the city.",
        "{question} Answer with only the place name, taken from the following text.",
        "Question about the passage below: {question}\nGive the city alone.",
        "Using the story that follows, answer with a single place name and nothing else. "
        "{question}",
        "Find the answer in the story below. {question} Just the city, please.",
        "Answer from the text. Question: {question} Output only the name of the city.",
        "Look at the short story below and tell me: {question} (one city, nothing else)",
    ],
    _qa_where,
    "Where someone did something in a 2-4 sentence story (a distractor city may appear).",
)
register_family(
    "qa_when",
    "qa",
    [
        "Read the story below and answer the question: {question} Reply with just the year.",
        "{question} Answer with only the year, taken from the following text.",
        "Question about the passage below: {question}\nGive the year alone.",
        "Using the story that follows, answer with a single four-digit year and nothing else. "
        "{question}",
        "Find the answer in the story below. {question} Just the year, please.",
        "Answer from the text. Question: {question} Output only the year as a number.",
        "Look at the short story below and tell me: {question} (one year, nothing else)",
    ],
    _qa_when,
    "In what year someone did something in a 2-4 sentence story (a distractor year may appear).",
)

# --------------------------------------------------------------------------- key sentence

# topic -> (the key sentence, which names the topic and makes a general claim; details that
# never name the topic). The key sentence is the only one mentioning the topic word.
KEY_SENTENCE_TOPICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "honeybees": (
        "Honeybees are vital pollinators for many of the crops that people eat.",
        (
            "A single hive can hold tens of thousands of workers.",
            "Workers visit hundreds of flowers on every trip.",
            "The queen can lay about two thousand eggs a day.",
            "Foragers share the location of flowers through a waggle dance.",
            "Wax for the comb is made by glands on the workers' bodies.",
            "A strong colony may store more than twenty kilograms of honey.",
        ),
    ),
    "volcanoes": (
        "Volcanoes shape the surface of the Earth more than almost any other natural force.",
        (
            "Lava can reach temperatures above one thousand degrees Celsius.",
            "Ash clouds sometimes rise more than ten kilometres into the sky.",
            "Several islands in the Pacific were built by a long chain of eruptions.",
            "Soil near old lava flows is often very fertile.",
            "Scientists measure small earthquakes to predict an eruption.",
            "Mount Etna has erupted dozens of times in the last century.",
        ),
    ),
    "sleep": (
        "Sleep is essential for both physical health and clear thinking.",
        (
            "Adults typically need between seven and nine hours a night.",
            "During deep stages the body repairs muscle tissue.",
            "Dreams happen mostly in the rapid eye movement phase.",
            "Screens before bed can delay the release of melatonin.",
            "Teenagers often feel most alert late in the evening.",
            "A short nap after lunch can improve reaction times.",
        ),
    ),
    "public libraries": (
        "Public libraries give everyone free access to knowledge and learning.",
        (
            "Many branches lend laptops and wifi hotspots.",
            "Reading hours for children are held every Saturday morning.",
            "The oldest branch in the city opened in 1895.",
            "Readers borrowed over two million books last year.",
            "Some buildings also host language classes for adults.",
            "Quiet rooms can be booked for up to three hours.",
        ),
    ),
    "forests": (
        "Forests protect the climate by storing huge amounts of carbon.",
        (
            "A mature oak can drink over one hundred litres of water a day.",
            "Fungi connect the roots of neighbouring trees underground.",
            "Woodpeckers make holes that owls later use as nests.",
            "About a third of all land is covered by trees.",
            "Fallen leaves turn into rich soil within a few years.",
            "Some pines only release their seeds after a fire.",
        ),
    ),
    "bicycles": (
        "Bicycles are one of the most efficient ways to travel short distances in a city.",
        (
            "A rider uses less energy per kilometre than a walker.",
            "The first pedal-driven designs appeared in the 1860s.",
            "Copenhagen has more than three hundred kilometres of cycle lanes.",
            "A basic steel frame weighs around ten kilograms.",
            "Chains should be oiled every few hundred kilometres.",
            "Parking for twenty riders fits in the space of one car.",
        ),
    ),
    "octopuses": (
        "Octopuses are among the most intelligent animals in the ocean.",
        (
            "In aquariums, some have learned to open screw-top jars.",
            "Most of their neurons are located in the arms.",
            "Skin cells can change colour in a fraction of a second.",
            "Some species live for only a year or two.",
            "A common trick is to squirt ink and escape in the dark cloud.",
            "Three hearts pump blue blood around the body.",
        ),
    ),
    "tea": (
        "Tea is the most widely drunk beverage in the world after water.",
        (
            "Green and black leaves come from the same plant.",
            "In Britain, about one hundred million cups are poured each day.",
            "The plant grows best on rainy hillsides.",
            "Leaves are often picked by hand to protect the buds.",
            "Milk was first added partly to protect fine china cups.",
            "Some harvests are aged for decades before they are sold.",
        ),
    ),
    "walking": (
        "Regular walking is one of the simplest ways to improve your health.",
        (
            "Thirty minutes a day can lower blood pressure.",
            "A brisk pace burns about four calories a minute.",
            "Many people find that ideas come more easily outdoors.",
            "Good shoes reduce the strain on knees and ankles.",
            "Counting steps helps some people stay motivated.",
            "Hills add extra work for the leg muscles.",
        ),
    ),
    "the Moon": (
        "The Moon controls the rhythm of the ocean tides on Earth.",
        (
            "Ancient impacts left craters across the entire surface.",
            "Twelve astronauts walked there between 1969 and 1972.",
            "The same side always faces our planet.",
            "Reflected light takes just over one second to travel from there to us.",
            "A full cycle of phases lasts about twenty-nine days.",
            "Daytime temperatures there rise above one hundred degrees Celsius.",
        ),
    ),
    "recycling": (
        "Recycling reduces waste and saves valuable raw materials.",
        (
            "Aluminium cans can be melted down again and again.",
            "Glass bottles are sorted by colour before they are crushed.",
            "One tonne of paper uses roughly seventeen trees.",
            "Many towns collect plastics every second week.",
            "Old phones contain small amounts of gold.",
            "Dirty containers can spoil a whole batch.",
        ),
    ),
}


def _key_sentence(rng: random.Random) -> Instance:
    key, details = KEY_SENTENCE_TOPICS[rng.choice(sorted(KEY_SENTENCE_TOPICS))]
    sentences = rng.sample(details, rng.randint(2, 4))
    sentences.insert(rng.randint(0, len(sentences)), key)
    return Instance(
        slots={},
        output=key,
        # The answer may drop the final full stop; otherwise it must be the sentence verbatim.
        check=Check(
            "exact_match",
            reference=[key, key.rstrip(".")],
            options={"normalize": ["strip", "collapse_whitespace", "lowercase"]},
        ),
        context=" ".join(sentences),
    )


register_family(
    "key_sentence",
    "summary",
    [
        "Which sentence best summarises the passage below? Copy that sentence exactly and write "
        "nothing else.",
        "Find the key sentence of the following text, the one that states its main point, and "
        "reply with it word for word.",
        "One sentence in the passage below states the main idea; the rest are details. Quote "
        "that sentence only.",
        "Return the single sentence that captures what the following passage is mainly about. "
        "Do not change or add any words.",
        "Pick out the topic sentence from the paragraph below and output it verbatim, with no "
        "other text.",
        "If you had to keep only one sentence of this passage as its summary, which would it be? "
        "Reply with that exact sentence.",
    ],
    _key_sentence,
    "A 3-5 sentence passage; the answer is the one sentence that names the topic and states "
    "the general claim (the others are details), copied verbatim.",
)

# --------------------------------------------------------------------------- constrained


def _list_n_items(rng: random.Random) -> Instance:
    category = rng.choice(sorted(CATEGORIES))
    n = rng.randint(2, 7)
    items = rng.sample(CATEGORIES[category], n)
    constraints = (
        {"type": "bullet_count", "relation": "exactly", "n": n},
        # "names only, nothing else": at most two words per item, so no intro or explanations.
        {"type": "word_count", "relation": "at_most", "n": 2 * n},
    )
    return Instance(
        slots={"n": n, "category": category},
        output=_bullets(items),
        check=Check("constraints", constraints=constraints),
    )


register_family(
    "list_n_items",
    "constrained",
    [
        "List {n} {category}. Write them as bullet points, one per line, and nothing else.",
        "Give me {n} {category} in a bulleted list (just the names, no introduction).",
        "Name exactly {n} {category}. Format: one '- ' bullet per item, no other text.",
        "I need a list of {n} {category}. Use a Markdown bullet list with only the names.",
        "Write a bullet list containing {n} different {category}, with no extra words.",
        "Which {category} can you think of? Bullet-point {n} of them, names only.",
    ],
    _list_n_items,
    "N bullet points naming items of a category; checked: exactly N bullets and at most 2N words.",
)

# (what the phrasing names, the keyword the answer must use, adjectives for the answer)
DESCRIBE_THINGS = (
    ("the ocean", "ocean", ("vast", "deep", "salty", "blue", "restless")),
    ("a cat", "cat", ("curious", "soft", "independent", "playful", "quiet")),
    ("the moon", "moon", ("bright", "pale", "distant", "silent", "round")),
    ("a forest", "forest", ("green", "shady", "peaceful", "dense", "ancient")),
    ("a desert", "desert", ("dry", "hot", "sandy", "empty", "vast")),
    ("coffee", "coffee", ("bitter", "hot", "strong", "dark", "aromatic")),
    ("winter", "winter", ("cold", "dark", "quiet", "snowy", "long")),
    ("a library", "library", ("quiet", "calm", "useful", "large", "welcoming")),
    ("a mountain", "mountain", ("tall", "rocky", "steep", "majestic", "cold")),
    ("a river", "river", ("long", "winding", "fast", "cool", "clear")),
    ("fresh bread", "bread", ("warm", "soft", "crusty", "fragrant", "golden")),
    ("a thunderstorm", "thunderstorm", ("loud", "dramatic", "wet", "powerful", "brief")),
)
_DESCRIPTION_TEMPLATES = (
    "{thing} is {a}.",
    "{thing} is {a} and {b}.",
    "{thing} is {a}, {b} and {c}.",
    "{thing} is {a}, {b} and {c}, and very {d}.",
    "{thing} always feels {a} and {b} to me.",
    "I think {lower} is {a}, {b} and wonderfully {c}.",
)


def _word_limit(rng: random.Random) -> Instance:
    thing, keyword, adjectives = rng.choice(DESCRIBE_THINGS)
    n = rng.randint(5, 15)
    a, b, c, d = rng.sample(adjectives, 4)
    filled = [
        t.format(thing=thing[0].upper() + thing[1:], lower=thing, a=a, b=b, c=c, d=d)
        for t in _DESCRIPTION_TEMPLATES
    ]
    output = rng.choice([s for s in filled if len(s.split()) <= n])
    constraints = (
        {"type": "word_count", "relation": "at_most", "n": n},
        # A description of the thing names it; this also fails empty or off-topic answers.
        {"type": "include_keywords", "keywords": [keyword]},
    )
    return Instance(
        slots={"thing": thing, "n": n},
        output=output,
        check=Check("constraints", constraints=constraints),
    )


register_family(
    "word_limit",
    "constrained",
    [
        "Describe {thing} in at most {n} words.",
        "Write a sentence about {thing} using no more than {n} words.",
        "In {n} words or fewer, write a sentence saying what {thing} is like.",
        "Give a short description of {thing}. Keep it to a maximum of {n} words.",
        "Using {n} words at most, describe {thing}.",
        "Sum up {thing} in one brief sentence (word limit: {n}).",
    ],
    _word_limit,
    "Describe a thing in at most N words (N 5-15); checked: word count and the thing named.",
)

# Opening word -> a sentence frame about {topic} that starts with it.
FIRST_WORD_FRAMES = {
    "Today": "Today I read a short article about {topic}.",
    "Sometimes": "Sometimes I think about {topic} for a long while.",
    "Honestly": "Honestly, I enjoy {topic} more than most things.",
    "Yesterday": "Yesterday my friend told me a story about {topic}.",
    "Perhaps": "Perhaps everyone should learn a little more about {topic}.",
    "Usually": "Usually I am happy to talk about {topic} with anyone.",
    "Once": "Once I wrote a short poem about {topic}.",
    "Clearly": "Clearly, there is a lot to say about {topic}.",
    "Every": "Every week I learn something new about {topic}.",
    "Many": "Many people have strong opinions about {topic}.",
    "Recently": "Recently I have become curious about {topic}.",
    "Surprisingly": "Surprisingly, my grandmother knows a great deal about {topic}.",
}


def _first_word(rng: random.Random) -> Instance:
    word = rng.choice(sorted(FIRST_WORD_FRAMES))
    topic = rng.choice(TOPICS)
    constraints = (
        {"type": "starts_with", "phrase": word},
        {"type": "sentence_count", "relation": "exactly", "n": 1},
        {"type": "include_keywords", "keywords": [topic]},
    )
    return Instance(
        slots={"word": word, "topic": topic},
        output=FIRST_WORD_FRAMES[word].format(topic=topic),
        check=Check("constraints", constraints=constraints),
    )


register_family(
    "first_word",
    "constrained",
    [
        'Write one sentence about {topic} that begins with the word "{word}".',
        'Start your answer with "{word}" and write a single sentence about {topic}.',
        'Tell me something about {topic} in one sentence. The first word must be "{word}".',
        'Compose a sentence on the subject of {topic}; its opening word has to be "{word}".',
        'In exactly one sentence, say something about {topic}, beginning with "{word}".',
        'Your reply must open with the word "{word}". Write one sentence mentioning {topic}.',
    ],
    _first_word,
    "One sentence about a topic starting with a given word; checked: starts_with, one sentence, "
    "the topic named.",
)

JOBS = (
    "nurse", "teacher", "baker", "pilot", "engineer", "architect", "chef", "farmer",
    "librarian", "plumber", "designer", "dentist", "electrician", "photographer",
)  # fmt: skip
HOBBIES = ("paint", "swim", "garden", "play chess", "bake bread", "hike", "read novels")
_PERSON_TEMPLATES = (
    "{name} is {age} years old. {name} lives in {city} and works as {job_a}.",
    "Meet {name}, {age_job} from {city}. On weekends, {name} likes to {hobby}.",
    "{name} works as {job_a} in {city}. Last month {name} turned {age}.",
    "This is {name}. {name} is {age}, has lived in {city} for years and is {job_a} by trade.",
)
_FIELD_TEXT = {
    "name": '"name" (a string)',
    "age": '"age" (an integer)',
    "city": '"city" (a string)',
    "job": '"job" (a string)',
}
JSON_SYSTEM_PROMPTS = (
    "You are a data-extraction service. You answer only with valid JSON.",
    "You convert short descriptions into structured records.",
    "You are a precise assistant that returns machine-readable output.",
)


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _join_and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _json_answer(rng: random.Random) -> Instance:
    person = {
        "name": rng.choice(NAMES),
        "age": rng.randint(19, 78),
        "city": rng.choice(CITIES),
        "job": rng.choice(JOBS),
    }
    context = rng.choice(_PERSON_TEMPLATES).format(
        **person,
        job_a=_article(person["job"]),
        age_job=_article(f"{person['age']}-year-old {person['job']}"),
        hobby=rng.choice(HOBBIES),
    )
    extra = rng.sample(["age", "city", "job"], rng.randint(1, 3))
    keys = ["name"] + [k for k in ("age", "city", "job") if k in extra]
    reference = {k: person[k] for k in keys}
    return Instance(
        slots={"fields": _join_and([_FIELD_TEXT[k] for k in keys])},
        output=json.dumps(reference),
        check=Check("json_match", reference=reference),
        context=context,
        system=rng.choice(JSON_SYSTEM_PROMPTS),
    )


register_family(
    "json_answer",
    "constrained",
    [
        "Extract the person's details below as a JSON object with the keys {fields}. Output only "
        "the JSON.",
        "Return JSON, and nothing else, containing {fields} for the person described below.",
        "From the following text, build a JSON object with exactly these keys: {fields}. Do not "
        "add any explanation.",
        "Give me a JSON object describing the person in the passage below. Keys: {fields}. "
        "Reply with the object alone.",
        "Read the description that follows and answer with one JSON object whose keys are "
        "{fields}.",
        "Fill in {fields} for the person mentioned below and respond only with valid JSON.",
    ],
    _json_answer,
    "A JSON object with the requested keys of the person described in the context; checked "
    "with json_match (exact keys and values).",
)

LOWERCASE_TEMPLATES = (
    "i really enjoy {topic}, especially on slow and quiet afternoons.",
    "my friend talks about {topic} all the time, and i never get bored of it.",
    "there is something calming about {topic} that i find hard to explain.",
    "i could happily spend a whole weekend reading about {topic}.",
    "thinking about {topic} always puts me in a good mood.",
    "i have been curious about {topic} since i was a child.",
)
LOWERCASE_SYSTEM_PROMPTS = (
    "You are a relaxed, friendly assistant who keeps replies short.",
    "You are a chat companion. Follow the user's formatting requests exactly.",
    "You are a helpful assistant.",
)


def _lowercase_reply(rng: random.Random) -> Instance:
    topic = rng.choice(TOPICS)
    constraints = (
        {"type": "lowercase"},
        {"type": "word_count", "relation": "at_most", "n": 20},
        {"type": "include_keywords", "keywords": [topic]},
    )
    return Instance(
        slots={"topic": topic},
        output=rng.choice(LOWERCASE_TEMPLATES).format(topic=topic),
        check=Check("constraints", constraints=constraints),
        system=rng.choice(LOWERCASE_SYSTEM_PROMPTS),
    )


register_family(
    "lowercase_reply",
    "constrained",
    [
        "Write a short reply about {topic} entirely in lowercase letters, in 20 words or fewer.",
        "Say something about {topic}. Use only lowercase letters (no capitals at all) and keep "
        "it to at most 20 words.",
        "tell me about {topic} in all lowercase, 20 words at most. no capital letters anywhere.",
        "In twenty words or fewer, and without a single capital letter, share a thought about "
        "{topic}.",
        "Reply with one or two sentences on {topic}. Everything must be lowercase, and the reply "
        "must not exceed 20 words.",
        "Describe {topic} briefly (max 20 words), writing every letter in lowercase.",
    ],
    _lowercase_reply,
    "A short reply about a topic in lowercase only; checked: lowercase, at most 20 words, the "
    "topic named.",
)

ROUTINES: dict[str, tuple[str, ...]] = {
    "make a cup of tea": (
        "Boil fresh water in a kettle.", "Put a tea bag in a mug.",
        "Pour the hot water over the tea bag.", "Let it steep for three minutes.",
        "Remove the tea bag.", "Add milk or sugar if you like.", "Stir and enjoy.",
    ),
    "wash your hands": (
        "Wet your hands with clean water.", "Apply soap.", "Rub your palms together.",
        "Scrub the backs of your hands and between your fingers.",
        "Keep scrubbing for twenty seconds.", "Rinse under running water.",
        "Dry your hands with a clean towel.",
    ),
    "plant a seed": (
        "Fill a small pot with soil.", "Make a hole about one centimetre deep.",
        "Drop the seed into the hole.", "Cover it lightly with soil.", "Water it gently.",
        "Place the pot in a sunny spot.", "Keep the soil moist.",
    ),
    "pack a suitcase": (
        "Check the weather at your destination.", "Make a list of what you need.",
        "Lay out your clothes.", "Roll the clothes to save space.",
        "Put heavy items at the bottom.", "Add toiletries in a sealed bag.",
        "Close and weigh the suitcase.",
    ),
    "make a sandwich": (
        "Take two slices of bread.", "Spread butter on one side of each slice.",
        "Add a slice of cheese.", "Add some lettuce and tomato.",
        "Put the second slice on top.", "Cut the sandwich in half.", "Serve it on a plate.",
    ),
    "clean a window": (
        "Remove dust from the frame.", "Mix warm water with a little soap.",
        "Wipe the glass with a soft cloth.", "Scrape off any stubborn spots.",
        "Rinse with clean water.", "Dry the glass with a squeegee.",
        "Polish the edges with a dry cloth.",
    ),
    "send a letter": (
        "Write your message on paper.", "Fold the letter neatly.", "Put it in an envelope.",
        "Seal the envelope.", "Write the address on the front.",
        "Stick a stamp in the corner.", "Drop it in a post box.",
    ),
    "boil an egg": (
        "Fill a small pot with water.", "Bring the water to a boil.",
        "Lower the egg in with a spoon.", "Turn the heat down a little.",
        "Cook it for eight minutes.", "Move the egg to cold water.", "Peel off the shell.",
    ),
    "make a paper aeroplane": (
        "Take a sheet of paper.", "Fold it in half lengthwise.", "Unfold it again.",
        "Fold the top corners to the centre line.", "Fold the new edges to the centre again.",
        "Fold the plane in half.", "Fold down both wings.",
    ),
    "brush your teeth": (
        "Wet your toothbrush.", "Add a small amount of toothpaste.",
        "Brush the outer surfaces of your teeth.", "Brush the inner surfaces.",
        "Brush the chewing surfaces.", "Brush your tongue gently.",
        "Rinse your mouth with water.",
    ),
    "water houseplants": (
        "Check whether the soil is dry.", "Fill a watering can.",
        "Let the water reach room temperature.", "Pour slowly around the base of each plant.",
        "Stop when water drips from the bottom.", "Empty the saucer under the pot.",
        "Wipe up any spilled water.",
    ),
    "make a bed": (
        "Remove the pillows.", "Straighten the bottom sheet.", "Tuck in the corners.",
        "Spread the duvet evenly.", "Fold back the top edge.", "Fluff the pillows.",
        "Put the pillows back in place.",
    ),
    "cook pasta": (
        "Fill a large pot with water.", "Add a pinch of salt.", "Bring the water to a boil.",
        "Add the pasta.", "Stir it now and then.", "Cook until tender.",
        "Drain the pasta in a colander.",
    ),
    "fix a flat bicycle tyre": (
        "Remove the wheel from the frame.", "Take the tyre off with tyre levers.",
        "Pull out the inner tube.", "Find the hole.", "Patch the hole or use a new tube.",
        "Put the tube and tyre back on.", "Pump the tyre up.",
    ),
    "wrap a present": (
        "Measure enough paper to cover the box.", "Cut the paper.",
        "Place the box in the middle.", "Fold one side over the box and tape it.",
        "Fold the other side over and tape it.", "Fold and tape the ends.", "Add a ribbon.",
    ),
}  # fmt: skip


def _numbered_steps(rng: random.Random) -> Instance:
    task = rng.choice(sorted(ROUTINES))
    steps = ROUTINES[task]
    n = rng.randint(3, min(7, len(steps)))
    # Keep the first and last steps so the shortened routine still starts and finishes.
    middle = sorted(rng.sample(range(1, len(steps) - 1), n - 2))
    chosen = [steps[0], *(steps[i] for i in middle), steps[-1]]
    return Instance(
        slots={"n": n, "task": task},
        output="\n".join(f"{i}. {s}" for i, s in enumerate(chosen, 1)),
        check=Check(
            "constraints",
            constraints=({"type": "numbered_list_count", "relation": "exactly", "n": n},),
        ),
    )


register_family(
    "numbered_steps",
    "constrained",
    [
        "Give {n} numbered steps to {task}.",
        "How do I {task}? Answer as a numbered list of exactly {n} steps.",
        "Write step-by-step instructions to {task} in {n} numbered steps (1., 2., ...).",
        "Break down how to {task} into {n} steps, numbering each one.",
        "List the {n} steps needed to {task}, one numbered step per line.",
        "I want to {task}. Explain it in exactly {n} numbered steps, nothing more.",
    ],
    _numbered_steps,
    "N numbered steps (3-7) for a simple routine; checked: exactly N numbered items.",
)

# --------------------------------------------------------------------------- code tracing

# An expression is an int literal, a variable name, or (operator, left, right).
Expr = int | str | tuple
_BINARY: dict[str, Callable[[int, int], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "%": operator.mod,
    ">": operator.gt,
    "<": operator.lt,
}
_PRECEDENCE = {">": 0, "<": 0, "+": 1, "-": 1, "*": 2, "//": 2, "%": 2}


def _eval(expr: Expr, env: dict[str, int]) -> Any:
    if isinstance(expr, int):
        return expr
    if isinstance(expr, str):
        return env[expr]
    op, left, right = expr
    return _BINARY[op](_eval(left, env), _eval(right, env))


def _render_expr(expr: Expr, parent: int = -1, right_operand: bool = False) -> str:
    """Python source for `expr`, with brackets only where precedence needs them."""
    if not isinstance(expr, tuple):
        return str(expr)
    op, left, right = expr
    p = _PRECEDENCE[op]
    text = f"{_render_expr(left, p)} {op} {_render_expr(right, p, True)}"
    return f"({text})" if p < parent or (p == parent and right_operand) else text


# Statements: ("assign", var, expr), ("aug", var, op, expr), ("for", var, count, body),
# ("if", condition, then_body, else_body), ("print", expr).
Stmt = tuple


def _run(program: list[Stmt], env: dict[str, int], printed: list[str]) -> None:
    """Our interpreter of the statement tree: what the rendered program would print."""
    for stmt in program:
        kind = stmt[0]
        if kind == "assign":
            env[stmt[1]] = _eval(stmt[2], env)
        elif kind == "aug":
            env[stmt[1]] = _BINARY[stmt[2]](env[stmt[1]], _eval(stmt[3], env))
        elif kind == "for":
            for i in range(stmt[2]):
                env[stmt[1]] = i
                _run(stmt[3], env, printed)
        elif kind == "if":
            _run(stmt[2] if _eval(stmt[1], env) else stmt[3], env, printed)
        elif kind == "print":
            printed.append(str(_eval(stmt[1], env)))
        else:  # pragma: no cover - programs are built in this module
            raise ValueError(f"unknown statement kind {kind!r}")


def _render_program(program: list[Stmt], indent: str = "") -> str:
    lines = []
    for stmt in program:
        kind = stmt[0]
        if kind == "assign":
            lines.append(f"{indent}{stmt[1]} = {_render_expr(stmt[2])}")
        elif kind == "aug":
            lines.append(f"{indent}{stmt[1]} {stmt[2]}= {_render_expr(stmt[3])}")
        elif kind == "for":
            lines.append(f"{indent}for {stmt[1]} in range({stmt[2]}):")
            lines.append(_render_program(stmt[3], indent + "    "))
        elif kind == "if":
            lines.append(f"{indent}if {_render_expr(stmt[1])}:")
            lines.append(_render_program(stmt[2], indent + "    "))
            lines.append(f"{indent}else:")
            lines.append(_render_program(stmt[3], indent + "    "))
        elif kind == "print":
            lines.append(f"{indent}print({_render_expr(stmt[1])})")
    return "\n".join(lines)


_VARIABLE_SETS = (("x", "y", "z"), ("a", "b", "c"), ("n", "m", "k"), ("p", "q", "r"))


def _arith_program(rng: random.Random) -> list[Stmt]:
    """One of five program shapes with small literals (divisors are never 0)."""
    u, v, w = rng.choice(_VARIABLE_SETS)
    lit = rng.randint
    shape = rng.choice(["chain", "augmented", "loop", "branch", "divmod"])
    if shape == "chain":
        program: list[Stmt] = [
            ("assign", u, lit(1, 12)),
            ("assign", v, (rng.choice("+-*"), u, lit(2, 9))),
        ]
        if rng.random() < 0.5:
            program.append(("assign", w, (rng.choice("+-*"), v, u)))
            last = w
        else:
            last = v
        final = rng.choice([last, (rng.choice("+-"), last, lit(1, 9)), ("*", (("+", last, u)), 2)])
        return [*program, ("print", final)]
    if shape == "augmented":
        program = [("assign", u, lit(1, 15))]
        for op in rng.sample(["+", "-", "*"], rng.randint(2, 3)):
            program.append(("aug", u, op, lit(2, 6)))
        return [*program, ("print", u)]
    if shape == "loop":
        step: Expr = rng.choice([lit(1, 6), "i", ("*", "i", 2)])
        return [
            ("assign", "total", lit(0, 5)),
            ("for", "i", lit(2, 6), [("aug", "total", "+", step)]),
            ("print", "total"),
        ]
    if shape == "branch":
        a, b = rng.sample(range(1, 30), 2)
        return [
            ("assign", u, a),
            ("assign", v, b),
            (
                "if",
                (rng.choice("<>"), u, v),
                [("print", ("-", v, u) if rng.random() < 0.5 else ("+", u, v))],
                [("print", ("*", u, 2))],
            ),
        ]
    numerator, divisor = lit(10, 99), lit(2, 9)
    final = rng.choice([("//", u, v), ("%", u, v), ("+", ("//", u, v), ("%", u, v))])
    return [("assign", u, numerator), ("assign", v, divisor), ("print", final)]


CODE_SYSTEM_PROMPTS = (
    "You are a Python interpreter. Reply with exactly what the program prints.",
    "You are an expert programmer who answers tersely.",
    "You help students check their understanding of Python code.",
)


def _code_arith_output(rng: random.Random) -> Instance:
    program = _arith_program(rng)
    printed: list[str] = []
    _run(program, {}, printed)
    answer = printed[0]
    return Instance(
        slots={},
        output=answer,
        check=Check("exact_match", reference=answer),
        context=_render_program(program),
        system=rng.choice(CODE_SYSTEM_PROMPTS),
    )


register_family(
    "code_arith_output",
    "code",
    [
        "What does the following Python program print? Reply with just the output.",
        "Run the code below in your head and write exactly what it prints, nothing else.",
        "Predict the output of the following snippet. Answer with the printed value only.",
        "Here is a short Python script. Give only the value it prints.",
        "Trace the program below step by step mentally, then reply with its printed output "
        "alone (no explanation).",
        "If this code were executed, what would appear on the screen? Respond with only that.",
    ],
    _code_arith_output,
    "What a tiny integer Python program prints (assignments, +=, a for loop, if/else, // and "
    "%); computed by our own interpreter, not exec.",
)

STRING_WORDS = (
    "banana", "python", "garden", "window", "planet", "rocket", "orange", "silver",
    "pencil", "marble", "castle", "kitten", "lemonade", "notebook", "sunflower", "teapot",
)  # fmt: skip
SHORT_WORDS = ("cat", "dog", "sun", "ink", "box", "hat", "sky", "owl")


def _string_snippet(rng: random.Random, var: str, word: str) -> tuple[list[str], str]:
    """Code lines after `var = "word"` and what they print."""
    n = len(word)
    op = rng.randrange(12)
    if op == 0:
        i = rng.randint(0, n - 3)
        j = rng.randint(i + 2, n)
        return [f"print({var}[{i}:{j}])"], word[i:j]
    if op == 1:
        k = rng.randint(2, 4)
        return [f"print({var}[:{k}])"], word[:k]
    if op == 2:
        k = rng.randint(2, 4)
        return [f"print({var}[-{k}:])"], word[-k:]
    if op == 3:
        return [f"print({var}.upper())"], word.upper()
    if op == 4:
        return [f"print({var}[::-1])"], word[::-1]
    if op == 5:
        return [f"print(len({var}))"], str(n)
    if op == 6:
        return [f"print({var}[0] + {var}[-1])"], word[0] + word[-1]
    if op == 7:
        old = rng.choice(sorted(set(word)))
        new = rng.choice([c for c in "aeiouxz" if c != old])
        return [f'print({var}.replace("{old}", "{new}"))'], word.replace(old, new)
    if op == 8:
        ch = rng.choice(sorted(set(word)))
        return [f'print({var}.count("{ch}"))'], str(word.count(ch))
    if op == 9:
        k = rng.randint(2, 5)
        return [f"big = {var}.upper()", f"print(big[:{k}])"], word.upper()[:k]
    if op == 10:
        other = rng.choice(SHORT_WORDS)
        return [f'other = "{other}"', f"print({var}[:3] + other)"], word[:3] + other
    other = rng.choice(SHORT_WORDS)
    return [f'other = "{other}"', f"print(len({var}) + len(other))"], str(n + len(other))


def _code_string_output(rng: random.Random) -> Instance:
    var = rng.choice(["s", "word", "text", "name"])
    word = rng.choice(STRING_WORDS)
    lines, printed = _string_snippet(rng, var, word)
    return Instance(
        slots={},
        output=printed,
        # Case matters here (`upper()`), so only surrounding whitespace is ignored.
        check=Check("exact_match", reference=printed, options={"normalize": ["strip"]}),
        context="\n".join([f'{var} = "{word}"', *lines]),
    )


register_family(
    "code_string_output",
    "code",
    [
        "What does this Python code print? Reply with just the printed text.",
        "Work out the output of the snippet below. Write exactly what appears, with no quotes "
        "and no explanation.",
        "Here is some Python that manipulates a string. What is printed? Give only the output.",
        "Read the following code and reply with the exact text it prints, nothing more.",
        "Pretend you are running the code below. Respond with its output alone.",
        "The program below prints one line. What is that line? Answer with it and nothing else.",
    ],
    _code_string_output,
    "What a two- or three-line Python string snippet prints (slicing, upper, len, replace, "
    "count, concatenation); case-sensitive exact match.",
)

# --------------------------------------------------------------------------- transformation

REPEAT_WORDS = (
    "cat", "blue", "hello", "apple", "yes", "moon", "tick", "river", "ping", "echo",
    "star", "bravo", "lemon", "sky", "robot", "hop", "wave", "zip", "drum", "owl",
)  # fmt: skip


def _repeat_word(rng: random.Random) -> Instance:
    word, n = rng.choice(REPEAT_WORDS), rng.randint(2, 8)
    output = " ".join([word] * n)
    return Instance(
        slots={"word": word, "n": n},
        output=output,
        check=Check(
            "exact_match",
            reference=output,
            options={"normalize": ["strip", "collapse_whitespace", "lowercase"]},
        ),
    )


register_family(
    "repeat_word",
    "transformation",
    [
        'Repeat the word "{word}" {n} times, separated by spaces.',
        "Write {word} {n} times in a row with a single space between each, and nothing else.",
        "Output the word {word}, repeated {n} times (space-separated).",
        'Say "{word}" exactly {n} times on one line, separated by spaces. No other text.',
        "I want to see {word} written {n} times. Separate the copies with spaces and add "
        "nothing else.",
        "Type the word {word} over and over, {n} times total, with spaces in between.",
    ],
    _repeat_word,
    "A word repeated N times (2-8), separated by spaces.",
)

# --------------------------------------------------------------------------- multi-turn

_SUM_QUESTIONS = (
    "What is {a} + {b}?",
    "Add {a} and {b}.",
    "What do you get if you add {a} to {b}?",
    "Quick sum: {a} plus {b}?",
    "What is the sum of {a} and {b}? Just the number, please.",
)
TUTOR_SYSTEM_PROMPTS = (
    "You are a helpful maths tutor who answers briefly.",
    "You are a calculator assistant. Keep answers short.",
    "You are a patient assistant helping a child with arithmetic.",
)


def _followup_double(rng: random.Random) -> Instance:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    doubled = 2 * (a + b)
    return Instance(
        slots={},
        output=str(doubled),
        check=_number_check(doubled),
        history=((rng.choice(_SUM_QUESTIONS).format(a=a, b=b), str(a + b)),),
        system=rng.choice(TUTOR_SYSTEM_PROMPTS),
    )


register_family(
    "followup_double",
    "multi_turn",
    [
        "Now double that. Reply with just the number.",
        "Multiply your answer by two. Only the number, please.",
        "What is twice that result? Answer with the number alone.",
        "Take that number and double it; just give me the result as a number.",
        "OK, and if you double it? Number only.",
        "Great. Now give me two times that answer, nothing but the number.",
    ],
    _followup_double,
    "After a sum question and its answer, the follow-up asks for double the sum.",
)

_LIST_REQUESTS = (
    "List a few {category} as bullet points.",
    "Can you give me some {category}? Use a bulleted list.",
    "Name several {category}, one bullet per line.",
    "What are some {category}? Answer with a short bullet list.",
)


def _followup_count(rng: random.Random) -> Instance:
    category = rng.choice(sorted(CATEGORIES))
    n = rng.randint(2, 7)
    items = rng.sample(CATEGORIES[category], n)
    request = rng.choice(_LIST_REQUESTS).format(category=category)
    return Instance(
        slots={},
        output=str(n),
        check=_number_check(n),
        history=((request, _bullets(items)),),
    )


register_family(
    "followup_count",
    "multi_turn",
    [
        "How many items did you list? Reply with just the number.",
        "Count the entries in your list and tell me the count only.",
        "How many things are in the list you just gave? Answer with a number alone.",
        "What was the length of that list? Give only the number.",
        "Quick check: how many bullet points did you write? Just the number, please.",
        "Tell me how many entries your previous answer contains, as a bare number.",
    ],
    _followup_count,
    "After the assistant listed 2-7 items (the request gives no number), how many it listed.",
)

_COMMA_REQUESTS = (
    "Name {k} {category}, separated by commas.",
    "Give me {k} {category} in a comma-separated list.",
    "Which {k} {category} come to mind? Write them on one line with commas.",
)


def _followup_reformat(rng: random.Random) -> Instance:
    category = rng.choice(sorted(CATEGORIES))
    k = rng.randint(2, 5)
    items = rng.sample(CATEGORIES[category], k)
    request = rng.choice(_COMMA_REQUESTS).format(k=NUMBER_WORDS[k], category=category)
    return Instance(
        slots={},
        output=json.dumps(items),
        check=Check("json_match", reference=items),
        history=((request, ", ".join(items)),),
    )


register_family(
    "followup_reformat",
    "multi_turn",
    [
        "Now give me the same items as a JSON array of strings. Output only the JSON.",
        "Rewrite your answer as a JSON list, keeping the order, and nothing else.",
        "Convert that list to JSON: an array of strings in the same order. Reply with the array "
        "only.",
        "Please format those exact items as a JSON array, in the same order. No explanation.",
        "Same answer, but as a JSON array this time: just the array.",
        "Turn your previous reply into a JSON array of strings (same order, same spelling). "
        "Respond with JSON alone.",
    ],
    _followup_reformat,
    "After the assistant gave a comma-separated list, the same items as a JSON array "
    "(json_match, order matters).",
)
