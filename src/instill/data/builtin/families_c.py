"""Built-in families, part C: long-form writing (explanations, letters, stories, lists, plans).

Parts A and B teach short, exact answers; a model tuned only on them answers tersely even when
asked for an essay. These families answer with well-formed multi-sentence and multi-paragraph
texts of 30-400 words, built procedurally from hand-written pools: true sentences about everyday
topics (`content.py`), and small pools of people, places, products and ideas defined here.
Generators combine sentence templates, connectives and sampled facts, so that eighty instances
of a family read differently while every sentence stays correct.

Length follows the request: some phrasings ask for "{k} paragraphs", "about {n} words" or "{k}
ideas", and the answer has exactly that; the others have their natural length (an email of
about 100 words, an essay of 250-350).

Checks are constraint lists (`instill.eval.constraints`) stating what the phrasing asks for:
the paragraph, bullet or numbered-item count, a word range, and `include_keywords` on the
subject (the topic, the recipient's name, the city), so that an empty, one-sentence or
off-topic answer fails while any honest answer of the requested shape passes.

`HELD_OUT_LONGFORM` names three families that are different tasks from the rest (a travel plan,
a toast, a product description); the trained families still cover explanations, letters,
stories, lists and summaries.
"""

from __future__ import annotations

import random
import re

from instill.data.builtin.content import TOPIC_ASPECTS, TOPIC_FACTS, TOPIC_KEYWORD, TOPICS, passage
from instill.data.builtin.core import Check, Instance, register_family

HELD_OUT_LONGFORM: tuple[str, ...] = ("itinerary", "toast_speech", "product_description")

# --------------------------------------------------------------------------- text helpers

# First words of fact sentences that are proper names and keep their capital after a connective.
_PROPER_STARTS = frozenset(
    {"Isaac", "Johannes", "Charles", "Galileo", "Christiaan", "Bartolomeo", "Augustin",
     "Olympus", "Brazil", "Japan", "Antarctic", "Louis", "Luke", "William", "Jan", "Zhang",
     "Gerardus", "Pierre", "Deep", "REM"}
)  # fmt: skip
_SMALL_TITLE_WORDS = frozenset({"a", "an", "and", "at", "of", "the", "to", "in", "on", "for"})
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _decap(sentence: str) -> str:
    """The sentence with a lowercase first letter, unless it starts with a proper name."""
    first = sentence.split()[0].rstrip(",:;")
    return sentence if first in _PROPER_STARTS else sentence[0].lower() + sentence[1:]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _title(text: str) -> str:
    words = text.split()
    return " ".join(
        w if i and w in _SMALL_TITLE_WORDS else w[0].upper() + w[1:] for i, w in enumerate(words)
    )


def _words(text: str) -> int:
    """Words as `instill.eval.constraints.count_words` counts them."""
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


def _with_connectives(
    rng: random.Random, sentences: list[str], connectives: tuple[str, ...], p: float = 0.3
) -> list[str]:
    """Prefix some sentences (never the first, never two in a row) with a connective."""
    out, previous = [], True
    for i, s in enumerate(sentences):
        if i and not previous and rng.random() < p:
            out.append(rng.choice(connectives) + _decap(s))
            previous = True
        else:
            out.append(s)
            previous = False
    return out


def _sample_in_order(rng: random.Random, items: tuple[str, ...], k: int) -> list[str]:
    k = min(k, len(items))
    return [items[i] for i in sorted(rng.sample(range(len(items)), k))]


def _topic_name(topic: str) -> str:
    return topic.removeprefix("the ")


def _about(topic: str) -> dict:
    """The answer names the topic: its keyword ("volcano") or its name ("volcanoes")."""
    names = dict.fromkeys([TOPIC_KEYWORD[topic], _topic_name(topic)])
    options = [{"type": "include_keywords", "keywords": [n]} for n in names]
    return options[0] if len(options) == 1 else {"type": "any_of", "constraints": options}


def _check(*constraints: dict) -> Check:
    return Check("constraints", constraints=tuple(constraints))


def _at_least(n: int) -> dict:
    return {"type": "word_count", "relation": "at_least", "n": n}


def _at_most(n: int) -> dict:
    return {"type": "word_count", "relation": "at_most", "n": n}


def _keywords(*words: str) -> dict:
    return {"type": "include_keywords", "keywords": list(dict.fromkeys(words))}


def _paragraphs(relation: str, n: int) -> dict:
    return {"type": "paragraph_count", "relation": relation, "n": n}


_ADDING = ("In addition, ", "Also, ", "What is more, ", "Besides that, ")

# --------------------------------------------------------------------------- explain_topic

_EXPLAIN_PLANS = {
    2: (("what", "how"), ("history", "why", "fun")),
    3: (("what",), ("how", "history"), ("why", "fun")),
    4: (("what",), ("how",), ("history",), ("why", "fun")),
}
_ASPECT_LEADS = {
    "how": ("", "", "", "It helps to look at how this works.", "The details are worth a look.",
            "Here is how it works."),
    "history": ("", "", "Historically, ", "Looking back, ", "The history is interesting too.",
                "There is a long story behind it."),
    "why": ("", "", "Why does this matter?", "This matters for several reasons.",
            "So why care?", "It is more important than it might seem."),
    "fun": ("", "", "There are some surprising details as well.", "A few facts are simply fun.",
            "Some details are just delightful.", "Here is something surprising."),
}  # fmt: skip
_EXPLAIN_SYSTEMS = (
    "You are a patient teacher who explains things clearly in well-organised paragraphs.",
    "You are a helpful assistant. Write clear, accurate prose for a general reader.",
)


def _topic_paragraph(rng: random.Random, topic: str, aspects: tuple[str, ...], first: bool) -> str:
    """One paragraph covering `aspects` of the topic, starting with its defining sentence when
    `first`."""
    sentences: list[str] = []
    for aspect in aspects:
        pool = TOPIC_ASPECTS[topic][aspect]
        if aspect == "what" and first:
            chosen = [pool[0], *_sample_in_order(rng, pool[1:], rng.randint(0, len(pool) - 1))]
        else:
            chosen = _sample_in_order(rng, pool, rng.randint(min(2, len(pool)), len(pool)))
        chosen = _with_connectives(rng, chosen, _ADDING, p=0.25)
        lead = rng.choice(_ASPECT_LEADS.get(aspect, ("",))) if sentences or not first else ""
        if lead.endswith(", "):
            chosen[0] = lead + _decap(chosen[0])
        elif lead:
            chosen.insert(0, lead)
        sentences += chosen
    return " ".join(sentences)


def _explain_topic(rng: random.Random) -> Instance:
    topic = rng.choice(TOPICS)
    k = rng.randint(2, 4)
    paragraphs = [
        _topic_paragraph(rng, topic, aspects, i == 0) for i, aspects in enumerate(_EXPLAIN_PLANS[k])
    ]
    return Instance(
        slots={"topic": topic, "k": k},
        output="\n\n".join(paragraphs),
        check=_check(_paragraphs("exactly", k), _about(topic), _at_least(20 * k)),
        system=rng.choice(_EXPLAIN_SYSTEMS) if rng.random() < 0.4 else None,
    )


register_family(
    "explain_topic",
    "longform",
    [
        "Explain {topic} in {k} paragraphs.",
        "Write {k} paragraphs explaining {topic} to a curious adult.",
        "Can you give me an explanation of {topic}? Use exactly {k} paragraphs, separated by "
        "blank lines.",
        "I would like to understand {topic}. Please write {k} short paragraphs about it.",
        "In {k} well-organised paragraphs, tell me what {topic} is, how it works and why it "
        "matters.",
        "Teach me about {topic}: what it is, a bit of history, why it matters. Spread it over "
        "{k} paragraphs.",
        "Compose a {k}-paragraph overview of {topic} for a general reader.",
        "My friend asked me about {topic} and I had no idea. Could you explain it properly, in "
        "{k} paragraphs, so I can tell them?",
    ],
    _explain_topic,
    "A 2-4 paragraph explanation of an everyday topic from true facts; checked: exactly k "
    "paragraphs, the topic named, at least 20k words.",
)

# --------------------------------------------------------------------------- write_n_words

_WORD_TARGETS = (60, 80, 100, 120, 150)


def _fit_words(rng: random.Random, topic: str, n: int) -> list[str] | None:
    """Sentences about the topic totalling 90-110% of n words (None when the topic is short)."""
    facts = TOPIC_FACTS[topic]
    order = [facts[0]]
    for aspect in ("what", "how", "history", "why", "fun"):
        pool = [s for s in TOPIC_ASPECTS[topic][aspect] if s != facts[0]]
        order += rng.sample(pool, len(pool))
    order = _with_connectives(rng, order, _ADDING, p=0.25)
    chosen, total = [], 0
    for s in order:
        if total >= 0.9 * n:
            break
        if total + _words(s) <= 1.1 * n:
            chosen.append(s)
            total += _words(s)
    return chosen if total >= 0.9 * n else None


def _write_n_words(rng: random.Random) -> Instance:
    topic = rng.choice(TOPICS)
    n = rng.choice(_WORD_TARGETS)
    chosen = _fit_words(rng, topic, n)
    while chosen is None:  # every topic has at least 140 words, so this ends at n <= 120
        n = max(t for t in _WORD_TARGETS if t < n)
        chosen = _fit_words(rng, topic, n)
    if n >= 100:  # longer texts get two paragraphs, split near the middle
        cut = len(chosen) // 2
        text = " ".join(chosen[:cut]) + "\n\n" + " ".join(chosen[cut:])
    else:
        text = " ".join(chosen)
    return Instance(
        slots={"topic": topic, "n": n},
        output=text,
        check=_check(_about(topic), _at_least(round(0.8 * n)), _at_most(round(1.2 * n))),
    )


register_family(
    "write_n_words",
    "longform",
    [
        "Write about {topic} in about {n} words.",
        "Give me a text of roughly {n} words on {topic}.",
        "Tell me about {topic}. Aim for around {n} words.",
        "Write approximately {n} words describing {topic}.",
        "I need a short informative piece on {topic}, about {n} words long.",
        "Describe {topic} for a school newsletter; the piece should be close to {n} words.",
        "Produce an informative text on the subject of {topic} whose length is near {n} words.",
        "Around {n} words, please: what should everyone know about {topic}?",
    ],
    _write_n_words,
    "An informative text of about n words (60-150) on a topic; checked: the topic named and "
    "0.8n-1.2n words.",
)

# --------------------------------------------------------------------------- summarize_passage

_SUMMARY_LEADS = ("", "", "The passage explains that ", "In short, ", "Put simply, ")


def _summarize_passage(rng: random.Random) -> Instance:
    topic, text = passage(rng, sentences=(7, 10))
    k = rng.choice((2, 3))
    sentences = re.split(r"(?<=\.) (?=[A-Z])", text)
    aspect_of = {s: a for a, pool in TOPIC_ASPECTS[topic].items() for s in pool}
    # After the defining sentence, the first sentence of the most central aspects the passage
    # covers: how it works and why it matters before history and fun facts.
    firsts: dict[str, str] = {}
    for s in sentences[1:]:
        firsts.setdefault(aspect_of[s], s)
    ranked = [firsts[a] for a in ("how", "why", "history", "fun", "what") if a in firsts]
    picked = sorted(ranked[: k - 1], key=sentences.index)
    lead = rng.choice(_SUMMARY_LEADS)
    summary = [lead + _decap(sentences[0]) if lead else sentences[0], *picked]
    limit = int(0.6 * _words(text))
    return Instance(
        slots={"k": k},
        output=" ".join(summary),
        check=_check(
            {"type": "sentence_count", "relation": "exactly", "n": k},
            _about(topic),
            _at_most(limit),
        ),
        context=text,
    )


register_family(
    "summarize_passage",
    "longform",
    [
        "Summarize the passage below in {k} sentences.",
        "Write a {k}-sentence summary of the following text.",
        "Read the text below and sum it up in exactly {k} sentences.",
        "Give me the gist of the following passage in {k} sentences.",
        "Condense the passage below into {k} sentences that keep its main points.",
        "Reduce the following text to its essentials: {k} sentences, no more and no less.",
        "Boil this passage down to {k} sentences for someone in a hurry.",
        "What does the following text say? Answer with a summary of {k} sentences.",
    ],
    _summarize_passage,
    "A 7-10 sentence factual passage; the answer is a faithful k-sentence summary (k 2-3); "
    "checked: exactly k sentences, the topic named, at most 60% of the passage's words.",
)

# --------------------------------------------------------------------------- rewrite_formal

_CASUAL_OPENERS = ("So, ", "Basically, ", "Honestly, ", "Okay, so ")
_CASUAL_CLOSERS = (
    "Pretty cool, right?",
    "Kinda amazing, honestly.",
    "Crazy stuff, huh?",
    "Anyway, that's basically it.",
)
CASUAL_WORDS = ("basically", "honestly", "okay", "pretty", "kinda", "stuff", "huh", "super")
_CONTRACTIONS = (
    (" do not ", " don't "),
    (" does not ", " doesn't "),
    (" cannot ", " can't "),
    (" is not ", " isn't "),
    (" it is ", " it's "),
    (" that is ", " that's "),
    (" they are ", " they're "),
    (" very ", " super "),
)
_FORMAL_CONNECTIVES = ("Furthermore, ", "In addition, ", "Moreover, ")


def _casual(rng: random.Random, sentences: list[str]) -> str:
    out = []
    forced = rng.randrange(len(sentences))
    for i, s in enumerate(sentences):
        if i == forced or rng.random() < 0.4:
            s = rng.choice(_CASUAL_OPENERS) + _decap(s)
        for formal, casual in _CONTRACTIONS:
            s = s.replace(formal, casual)
        out.append(s)
    out.append(rng.choice(_CASUAL_CLOSERS))
    return " ".join(out)


def _rewrite_formal(rng: random.Random) -> Instance:
    topic, text = passage(rng, sentences=(5, 7))
    sentences = re.split(r"(?<=\.) (?=[A-Z])", text)
    casual = _casual(rng, sentences)
    formal = " ".join(_with_connectives(rng, sentences, _FORMAL_CONNECTIVES, p=0.3))
    used = [w for w in CASUAL_WORDS if re.search(rf"(?<!\w){w}(?!\w)", casual, re.IGNORECASE)]
    return Instance(
        slots={},
        output=formal,
        check=_check(
            {"type": "forbidden_words", "words": used},
            _about(topic),
            _at_least(round(0.7 * _words(text))),
        ),
        context=casual,
    )


register_family(
    "rewrite_formal",
    "longform",
    [
        "Rewrite the following passage in a formal tone, keeping every fact.",
        "Make the text below sound formal and professional without losing any information.",
        "The passage below is very casual. Rewrite it so it could appear in an encyclopedia.",
        "Turn this chatty text into formal written English. Keep all the facts.",
        "Please edit the following paragraph into a neutral, formal register.",
        "Rephrase the text below for a formal report: no slang, no contractions, same content.",
        "Here is an informal note. Produce a polished, formal version of it that a textbook "
        "could print.",
        "Clean up the register of the passage below: it should read as serious, formal prose "
        "while saying exactly the same things.",
    ],
    _rewrite_formal,
    "A chatty 5-7 sentence passage (casual openers, contractions, a slangy closer); the answer "
    "is the formal version; checked: none of the casual words used, the topic named, at least "
    "70% of the facts' words.",
)

# --------------------------------------------------------------------------- fact_list

_FACT_INTROS = (
    "Here are {n} facts about {name}:",
    "{N} interesting facts about {name}:",
    "Here are {n} things worth knowing about {name}:",
    "Some facts about {name}:",
)


def _fact_list(rng: random.Random) -> Instance:
    topic = rng.choice(TOPICS)
    k = rng.randint(3, 6)
    pool = [s for a in ("how", "history", "why", "fun") for s in TOPIC_ASPECTS[topic][a]]
    facts = rng.sample(pool, k)
    n_word = _NUMBER_WORDS[k] if rng.random() < 0.5 else str(k)
    intro = rng.choice(_FACT_INTROS).format(n=n_word, N=_cap(n_word), name=_topic_name(topic))
    output = intro + "\n\n" + "\n".join(f"- {s}" for s in facts)
    return Instance(
        slots={"topic": topic, "k": k},
        output=output,
        check=_check(
            {"type": "bullet_count", "relation": "exactly", "n": k}, _about(topic), _at_least(6 * k)
        ),
    )


register_family(
    "fact_list",
    "longform",
    [
        "Give me {k} interesting facts about {topic} as a bulleted list.",
        "List {k} facts about {topic}, one bullet point each, in full sentences.",
        "What are {k} things everyone should know about {topic}? Use bullet points.",
        "Share {k} facts about {topic}. Format them as a Markdown bullet list.",
        "Write a bullet list of {k} true and interesting facts about {topic}.",
        "I am making a poster about {topic}. Give me {k} facts for it, each as a bullet.",
        "Jot down {k} facts on {topic}; put each one on its own '- ' line as a complete sentence.",
        "Name {k} surprising or important facts concerning {topic}, formatted as bullets.",
    ],
    _fact_list,
    "k bulleted facts (3-6) about a topic after a one-line intro; checked: exactly k bullets, "
    "the topic named, at least 6k words.",
)

# --------------------------------------------------------------------------- blog_post

_BLOG_TITLES = (
    "A Closer Look at {T}",
    "{T}: More Interesting Than You Think",
    "What I Learned About {T}",
    "The Surprising World of {T}",
    "Everything You Wanted to Know About {T}",
)
_BLOG_HOOKS = (
    "If you have ever stopped to wonder about {name}, you are not alone.",
    "This week I went down a rabbit hole reading about {name}, and I want to share the best "
    "parts with you.",
    "Few everyday subjects reward a little curiosity as much as {name}.",
    "Today's post is about {name}, a subject that turns out to be much richer than it looks.",
)
_BLOG_HOOK_FOLLOWS = (
    "Here is what I found out.",
    "Grab a cup of something warm and read on.",
    "Below are the highlights, in plain language.",
    "Let me walk you through it.",
    "It is a better story than you might expect.",
    "Some of it surprised me.",
)
_BLOG_CLOSERS = (
    "I hope this post gave you a new way of looking at {name}.",
    "If you know another surprising fact about {name}, share it in the comments.",
    "Next time the subject of {name} comes up, you will have plenty to say.",
)
_BLOG_SIGNOFFS = (
    "Thanks for reading, and see you in the next post!",
    "Until next time, stay curious.",
    "Happy reading, and see you next week.",
    "Thanks for stopping by.",
    "More soon!",
    "",
)


def _blog_post(rng: random.Random) -> Instance:
    topic = rng.choice(TOPICS)
    name = _topic_name(topic)
    title = "# " + rng.choice(_BLOG_TITLES).format(T=_title(name))
    hook = (
        rng.choice(_BLOG_HOOKS).format(name=name)
        + " "
        + rng.choice(_BLOG_HOOK_FOLLOWS)
        + " "
        + TOPIC_FACTS[topic][0]
    )
    body = [
        _topic_paragraph(rng, topic, ("how",), first=False),
        _topic_paragraph(rng, topic, ("history", "why"), first=False),
        _topic_paragraph(rng, topic, ("fun",), first=False),
    ]
    closer = (
        rng.choice(_BLOG_CLOSERS).format(name=name) + " " + rng.choice(_BLOG_SIGNOFFS)
    ).strip()
    output = "\n\n".join([title, hook, *body, closer])
    return Instance(
        slots={"topic": topic},
        output=output,
        check=_check(_paragraphs("at_least", 4), _about(topic), _at_least(120), _at_most(400)),
        system="You write a friendly, accurate popular-science blog."
        if rng.random() < 0.3
        else None,
    )


register_family(
    "blog_post",
    "longform",
    [
        "Write a blog post about {topic}, with a title.",
        "Draft a friendly blog article on {topic}. Give it a headline and several paragraphs.",
        "I run a blog for curious readers. Write this week's post: a titled piece about {topic}.",
        "Create a blog post with a title that introduces readers to {topic}.",
        "Write an engaging, informative blog entry about {topic}, starting with a catchy title.",
        "Compose a post for a general-interest blog on the subject of {topic}. Include a headline.",
        "Put together a titled article for my website that gets readers excited about {topic}.",
        "My readers keep asking about {topic}. Could you write them a proper post on it, "
        "headline first?",
    ],
    _blog_post,
    "A titled blog post about a topic: hook, three fact paragraphs, sign-off (170-250 words); "
    "checked: at least 4 paragraphs, the topic named, 120-400 words.",
)

# --------------------------------------------------------------------------- formal_letter

SENDERS = (
    ("Maya", "Patel"), ("Daniel", "Brooks"), ("Elena", "Rossi"), ("Farid", "Rahimi"),
    ("Grace", "Okoye"), ("Jonas", "Berg"), ("Priya", "Nair"), ("Samuel", "Reyes"),
    ("Clara", "Weiss"), ("Tom", "Gallagher"), ("Aisha", "Bello"), ("Lukas", "Novak"),
)  # fmt: skip
RECIPIENTS = (
    ("Ms.", "Lopez"), ("Mr.", "Chen"), ("Dr.", "Okafor"), ("Ms.", "Lindqvist"),
    ("Mr.", "Haddad"), ("Dr.", "Moreau"), ("Ms.", "Tanaka"), ("Mr.", "Fischer"),
)  # fmt: skip
_COMPLAINT_ITEMS = (
    ("a coffee machine", "machine"), ("a desk chair", "chair"), ("a bookcase", "bookcase"),
    ("a vacuum cleaner", "cleaner"), ("a pair of headphones", "headphones"),
    ("a rice cooker", "cooker"),
)  # fmt: skip
_COMPLAINT_PROBLEMS = (
    "arrived with a cracked panel",
    "stopped working after only a week",
    "arrived three weeks late and was missing several parts",
    "does not match the description on your website",
)
_SHOPS = ("Brightline Home Goods", "Northwind Furniture", "Harbour Electronics", "Oak & Ivy")
_JOBS = (
    ("Riverside Public Library", "assistant librarian", "library",
     "I have volunteered at my local library for two years, where I helped run a weekly "
     "reading club for children",
     "I am organised, patient with visitors and comfortable with the catalogue software that "
     "most libraries use"),
    ("Greenfield Hotel", "receptionist", "hotel",
     "I have worked for three years at the front desk of a busy guesthouse",
     "I speak English and Spanish, stay calm under pressure and enjoy helping guests"),
    ("Hillcrest Veterinary Clinic", "veterinary nurse", "clinic",
     "I recently completed my training and spent six months on placement at a rural practice",
     "I am gentle with animals, careful with records and happy to work weekend shifts"),
    ("Maple Street Bakery", "pastry assistant", "bakery",
     "I have spent the last two years baking for a café, where I prepared bread and pastries "
     "every morning",
     "I am an early riser, I work quickly and cleanly, and I love learning new recipes"),
    ("Lakeside Primary School", "teaching assistant", "school",
     "I have supported children with reading and maths as a volunteer for eighteen months",
     "I am patient, encouraging and good at explaining ideas in more than one way"),
)  # fmt: skip
_REQUESTS = (
    ("Millbrook Council", "permission to hold a charity picnic in Elm Park", "picnic",
     "The picnic would raise money for the local food bank and would take place on a Saturday "
     "afternoon in June",
     "We expect about sixty guests, and we will bring our own tables and take all rubbish away"),
    ("the City Museum", "a guided tour for a group of students", "tour",
     "I teach history to a class of twenty-four students aged fourteen",
     "We would be happy to visit on any weekday morning next month that suits your staff"),
    ("Westgate Community Centre", "the use of your main hall for a weekly chess club", "chess",
     "The club would meet on Thursday evenings and is open to players of all ages",
     "We would look after the room carefully and leave it as we found it"),
)  # fmt: skip
_APOLOGIES = (
    ("missing our meeting on Tuesday", "meeting",
     "A family emergency meant that I had to leave the office at short notice, and I failed to "
     "let you know in time"),
    ("the late payment of my invoice", "invoice",
     "A mistake in my records meant that the payment was not sent on the due date"),
    ("the noise from my party last Saturday", "party",
     "The evening went on much later than I had planned, and I did not think enough about my "
     "neighbours"),
)  # fmt: skip
_FORMAL_SIGNOFFS = ("Yours sincerely", "Kind regards", "With best regards", "Yours faithfully")


def _formal_letter(rng: random.Random) -> Instance:
    title, surname = rng.choice(RECIPIENTS)
    first, last = rng.choice(SENDERS)
    kind = rng.choice(("complaint", "application", "request", "apology"))
    if kind == "complaint":
        (item, noun), problem = rng.choice(_COMPLAINT_ITEMS), rng.choice(_COMPLAINT_PROBLEMS)
        shop, order = rng.choice(_SHOPS), rng.randint(10000, 99999)
        remedy = rng.choice(("a replacement", "a full refund", "a repair at no cost"))
        purpose = f"complaining that {item} I bought from {shop} {problem}"
        body = [
            f"I am writing to complain about {item} that I bought from {shop} last month "
            f"(order number {order}). Unfortunately, the {noun} {problem}.",
            rng.choice(
                (
                    f"I have been a customer of {shop} for several years and have always been "
                    "pleased with its service, so this came as a real disappointment.",
                    "I contacted your customer service team by phone last week, but I have not yet "
                    "received a reply.",
                )
            )
            + f" I have kept the receipt and photographs of the {noun}.",
            f"I would be grateful if you could arrange {remedy} within the next fourteen days. "
            f"Please let me know how you would like me to return the {noun}.",
        ]
    elif kind == "application":
        org, role, noun, experience, qualities = rng.choice(_JOBS)
        purpose = f"applying for the position of {role} at {org}"
        body = [
            f"I am writing to apply for the position of {role} at {org}, which I saw advertised "
            "on your website.",
            f"{experience}. {qualities}. "
            + rng.choice(
                (
                    f"I would be proud to bring this experience to the {noun}.",
                    f"I believe these strengths would make me a useful member of your {noun} team.",
                )
            ),
            "I have attached my CV and would welcome the chance to discuss the role with you. "
            "Thank you for considering my application.",
        ]
    elif kind == "request":
        org, request, noun, reason, detail = rng.choice(_REQUESTS)
        purpose = f"asking {org} for {request}"
        body = [
            f"I am writing on behalf of a small local group to ask for {request}.",
            f"{reason}. {detail}.",
            rng.choice(
                (
                    "I would be very grateful for your help and am happy to provide any further "
                    "details you need.",
                    "Please let me know whether this would be possible and whether there is a form "
                    "I should complete.",
                )
            ),
        ]
    else:
        reason, noun, explanation = rng.choice(_APOLOGIES)
        purpose = f"apologising for {reason}"
        body = [
            f"I am writing to apologise sincerely for {reason}.",
            f"{explanation}. I understand that this caused you inconvenience, and I take full "
            "responsibility.",
            rng.choice(
                (
                    "I have taken steps to make sure that this does not happen again.",
                    "I will make sure that this does not happen again.",
                )
            )
            + " Thank you for your patience and understanding.",
        ]
    signoff = f"{rng.choice(_FORMAL_SIGNOFFS)},\n{first} {last}"
    output = "\n\n".join([f"Dear {title} {surname},", *body, signoff])
    return Instance(
        slots={"recipient": f"{title} {surname}", "purpose": purpose, "sender": f"{first} {last}"},
        output=output,
        check=_check(
            _keywords(surname, last, noun), _paragraphs("at_least", 4), _at_least(60), _at_most(300)
        ),
    )


register_family(
    "formal_letter",
    "longform",
    [
        "Write a formal letter to {recipient} {purpose}. Sign it {sender}.",
        "Draft a formal letter from {sender} to {recipient}, {purpose}.",
        "Please write a polite, formal letter to {recipient}. I am {sender}, and the letter "
        "should be {purpose}.",
        "Compose a professional letter addressed to {recipient} {purpose}. It is from {sender}.",
        "I need a formal letter to {recipient}: the subject is that I am {purpose}. My name is "
        "{sender}.",
        "Write the letter {sender} would send to {recipient} when {purpose}. Keep it formal.",
        "Help {sender} put together a courteous, businesslike letter for {recipient} - the "
        "occasion: {purpose}.",
        "Put into a proper formal letter to {recipient} (from {sender}) the following: {purpose}.",
    ],
    _formal_letter,
    "A formal letter (complaint, job application, request or apology; 65-110 words) with "
    "greeting, three body paragraphs and sign-off; checked: recipient, sender and subject named, "
    "at least 4 paragraphs, 70-300 words.",
)

# --------------------------------------------------------------------------- friendly_email

FRIENDS = ("Sam", "Lucy", "Ravi", "Hannah", "Mateo", "Zoe", "Kofi", "Emma", "Yuki", "Ollie")
_GIFTS = (
    ("cookbook", "I have already tried the lemon pasta, and it was delicious"),
    ("scarf", "it is the perfect colour, and I wore it on my walk this morning"),
    ("board game", "we played it with my cousins on Sunday and laughed for hours"),
    ("plant", "it is sitting on my windowsill and already has two new leaves"),
    ("novel", "I started it last night and could not put it down"),
    ("mug", "my morning coffee tastes better in it already"),
)  # fmt: skip
_EVENTS = (
    ("picnic", "in Riverside Park", "on Saturday afternoon", "bring a blanket if you have one"),
    ("barbecue", "in our garden", "next Sunday at about four",
     "just bring yourself and an appetite"),
    ("film night", "at my flat", "on Friday evening", "I will make popcorn"),
    ("birthday dinner", "at the little Italian place on Mill Street", "on the 14th",
     "let me know by Wednesday so I can book the table"),
    ("games evening", "at my place", "next Thursday", "feel free to bring a friend"),
)  # fmt: skip
# (keyword, the news as the prompt says it, as the email says it, praise)
_NEWS = (
    ("job", "getting a new job", "getting the new job", "They are lucky to have you"),
    ("marathon", "finishing a first marathon", "finishing your first marathon",
     "All those early training runs paid off"),
    ("exams", "passing the final exams", "passing your exams", "You worked so hard for this"),
    ("flat", "moving into a new flat", "moving into your new flat", "I cannot wait to see it"),
)  # fmt: skip
_GREETINGS = ("Hi {f},", "Hey {f},", "Dear {f},", "Hello {f},")
_FRIENDLY_SIGNOFFS = ("Love", "Talk soon", "Take care", "See you soon", "Best wishes", "Cheers")


def _friendly_email(rng: random.Random) -> Instance:
    friend, (sender, _) = rng.choice(FRIENDS), rng.choice(SENDERS)
    kind = rng.choice(("thanks", "invite", "congrats"))
    if kind == "thanks":
        gift, detail = rng.choice(_GIFTS)
        purpose, noun = f"to thank {friend} for the {gift}", gift
        body = [
            rng.choice(
                (
                    f"Thank you so much for the {gift}!",
                    f"I just wanted to say a huge thank you for the {gift}.",
                )
            )
            + f" It was such a thoughtful present, and {detail}.",
            rng.choice(
                (
                    "It really made my week, and it was lovely to know you were thinking of me.",
                    "You always seem to know exactly what I will like.",
                )
            )
            + " "
            + rng.choice(
                (
                    "We should meet up soon so I can thank you properly.",
                    "Coffee is on me next time.",
                    "Say hello to everyone for me.",
                    "I owe you one!",
                )
            ),
        ]
    elif kind == "invite":
        event, place, when, extra = rng.choice(_EVENTS)
        purpose, noun = f"to invite {friend} to a {event}", event
        body = [
            f"I am having a {event} {place} {when}, and I would love you to come.",
            rng.choice(
                (
                    "A few friends from the old days will be there, so it should be a fun "
                    "catch-up.",
                    "It will be relaxed and low-key, just good food and good company.",
                )
            )
            + f" No need to bring anything, but {extra}.",
            rng.choice(
                (
                    "Let me know if you can make it!",
                    "Can you come? Tell me soon.",
                    "I really hope you can make it.",
                    "Just reply when you know.",
                )
            ),
        ]
    else:
        noun, asked, news, praise = rng.choice(_NEWS)
        purpose = f"to congratulate {friend} on {asked}"
        body = [
            f"I just heard the news about you {news}. Congratulations!",
            f"{praise}, and I am so proud of you.",
            rng.choice(
                (
                    "We have to celebrate soon. Dinner is on me!",
                    "Let's celebrate together next weekend if you are free.",
                )
            ),
        ]
    output = "\n\n".join(
        [
            rng.choice(_GREETINGS).format(f=friend),
            *body,
            f"{rng.choice(_FRIENDLY_SIGNOFFS)},\n{sender}",
        ]
    )
    return Instance(
        slots={"friend": friend, "purpose": purpose, "sender": sender},
        output=output,
        check=_check(
            _keywords(friend, sender, noun),
            _paragraphs("at_least", 3),
            _at_least(35),
            _at_most(200),
        ),
        system="You help people write warm, natural personal emails."
        if rng.random() < 0.3
        else None,
    )


register_family(
    "friendly_email",
    "longform",
    [
        "Write a short, friendly email to {friend} {purpose}. Sign it {sender}.",
        "Draft a casual email from {sender} to {friend}, written {purpose}.",
        "I'm {sender}. Write me a warm email to my friend {friend}; I want {purpose}.",
        "Compose a friendly note by email, from {sender} to {friend}, {purpose}.",
        "Please help {sender} write an email to {friend}. The point of it: {purpose}.",
        "Could you write an informal email {purpose}? It's from {sender} to {friend}.",
        "Knock out a quick, cheerful message for {sender} to send {friend} - the reason is "
        "{purpose}.",
        "Put together a relaxed email, signed {sender}, whose purpose is {purpose}; the reader "
        "is {friend}.",
    ],
    _friendly_email,
    "A short informal email (thank-you, invitation, congratulations; 35-70 words) with greeting "
    "and sign-off; checked: friend, sender and subject named, at least 3 paragraphs, 35-200 "
    "words.",
)

# --------------------------------------------------------------------------- short_story

# (name, subject, object, possessive, reflexive, description)
CHARACTERS = (
    ("Mira", "she", "her", "her", "herself", "a young baker"),
    ("Tomas", "he", "him", "his", "himself", "a retired sailor"),
    ("Lena", "she", "her", "her", "herself", "a shy violinist"),
    ("Arjun", "he", "him", "his", "himself", "a curious schoolboy"),
    ("Nadia", "she", "her", "her", "herself", "a lighthouse keeper"),
    ("Felix", "he", "him", "his", "himself", "an inventor with more ideas than money"),
    ("Rosa", "she", "her", "her", "herself", "a gardener with a stubborn streak"),
    ("Omar", "he", "him", "his", "himself", "a bus driver who loved to sing"),
    ("Ines", "she", "her", "her", "herself", "a student nurse"),
    ("Hugo", "he", "him", "his", "himself", "an old clockmaker"),
)
# (preposition, where, what to call it later)
PLACES = (
    ("in", "a fishing village on a windy coast", "the village"),
    ("in", "a busy city beside a wide river", "the city"),
    ("in", "a small town high in the mountains", "the town"),
    ("on", "a quiet island with a single harbour", "the island"),
    ("in", "a valley full of apple orchards", "the valley"),
    ("in", "an old neighbourhood of narrow streets", "the neighbourhood"),
)
# (the goal, what achieving it was)
GOALS = (
    ("win the baking contest at the summer fair", "won the baking contest"),
    ("build a small wooden boat before the end of summer", "sailed the little boat"),
    ("play a solo at the spring concert", "played the solo"),
    ("find a ring that a grandmother had lost years before", "found the ring"),
    ("grow the biggest pumpkin in the region", "grew the biggest pumpkin anyone had seen"),
    ("open a tiny bookshop", "opened the doors of the little bookshop"),
    ("climb the highest hill nearby and watch the sunrise", "watched the sun rise from the top"),
)
_OBSTACLES = (
    "a storm knocked out the power for three days",
    "the money {s} had saved ran out halfway",
    "a bad fall left {o} with a sprained wrist",
    "a rival laughed at the plan in front of everyone",
    "the only shop that sold the right materials closed for the season",
)
_HELPERS = (
    "an elderly neighbour named Mrs. Hale",
    "a kind librarian",
    "a school friend named Jonah",
    "the owner of the corner café",
    "a cousin who was visiting for the summer",
)
_LESSONS = (
    "that asking for help is not a sign of weakness",
    "that patience matters as much as talent",
    "that small steps, taken every day, add up",
    "that a setback is not the same as a failure",
)
_STORY_PARTS = {
    "intro": (
        "{Name} was {desc} who lived {at} {place}. For as long as anyone could remember, {s} had "
        "wanted to {goal}. Every evening {s} sat by the window and made careful plans.",
        "{At} {place}, there lived {desc} named {Name}. {S} had one dream: to {goal}. {S} told "
        "almost no one, but {s} thought about it every single day.",
        "Nobody {at} {place} was surprised when {Name}, {desc}, announced a plan to {goal}. {S} "
        "had been talking about it for years. This time, {s} meant it.",
        "Life {at} {place} was quiet, and {Name}, {desc}, liked it that way. Still, {s} had a "
        "secret wish: to {goal}. One spring morning, {s} decided to stop waiting.",
        "Everyone {at} {place} knew {Name}, {desc}. Few of them knew that {s} had always hoped "
        "to {goal}, or that {s} had finally made up {p} mind to try.",
    ),
    "obstacle": (
        "Then, just as things were going well, {obstacle}. {Name} felt {p} hopes sink, and for "
        "a few days {s} could not bring {r} to try again.",
        "But the work was harder than {s} had expected, and then {obstacle}. For a while it "
        "seemed that the whole plan would fall apart.",
        "Trouble arrived in the middle of spring, when {obstacle}. That night {Name} sat alone "
        "in the kitchen and wondered whether to give up.",
        "Nothing went as planned. First the weather turned, and then {obstacle}. {Name} began "
        "to wonder whether the dream had been foolish all along.",
        "For a few weeks everything went smoothly. Then {obstacle}, and {Name} had to stop "
        "and think hard about what to do next.",
    ),
    "attempt": (
        "Instead of giving up, {Name} tried again, more slowly this time. {S} wrote a list of "
        "everything that could go wrong and worked through it one item at a time.",
        "{Name} decided to start over with one small step each day. Some days went well and "
        "others did not, yet {s} kept going.",
        "Slowly, {Name} found a way around the problem. {S} asked questions, borrowed what {s} "
        "could not buy and practised whenever {s} had a spare hour.",
        "After a week of feeling sorry for {r}, {Name} made a new plan. {S} got up an hour "
        "earlier every morning and worked until the light faded.",
    ),
    "helper": (
        "Help came from an unexpected place when {helper} noticed what was happening and "
        "offered to lend a hand. Together they worked late into the evenings, sharing tea and "
        "ideas.",
        "One morning {helper} knocked on the door with a basket of supplies and a piece of good "
        "advice. {Name} listened carefully and changed the plan. For the first time in weeks, "
        "{s} felt hopeful.",
        "It was {helper} who finally made the difference, with a clever suggestion over a cup "
        "of tea. {Name} had not thought of it at all, and it solved the problem in a single "
        "afternoon.",
    ),
    "resolution": (
        "On the big day, {Name} finally {achieved}. Friends and neighbours cheered, and {s} "
        "could hardly stop smiling. Years later, {s} still said that those difficult months had "
        "taught {o} {lesson}.",
        "In the end, {Name} {achieved}, and it felt even better than {s} had imagined. People "
        "in {short} talked about it for weeks. Looking back, {Name} understood {lesson}.",
        "When {Name} at last {achieved}, the whole of {short} seemed to celebrate. That evening "
        "{s} walked home slowly, tired and happy. {S} had learned {lesson}.",
        "Months of effort paid off when {Name} {achieved}. {S} laughed out loud with relief. "
        "Everyone agreed it had been worth the wait, and {Name} knew now {lesson}.",
        "It happened on an ordinary afternoon: {Name} {achieved}. There was no crowd, only a "
        "few friends, but {s} felt proud all the same. The months of work had shown {o} {lesson}.",
    ),
}
_STORY_PLANS = {
    3: ("intro", "obstacle", "resolution"),
    4: ("intro", "obstacle", "attempt", "resolution"),
    5: ("intro", "obstacle", "attempt", "helper", "resolution"),
}


def _short_story(rng: random.Random) -> Instance:
    name, s, o, p, r, desc = rng.choice(CHARACTERS)
    at, place, short = rng.choice(PLACES)
    goal, achieved = rng.choice(GOALS)
    k = rng.randint(3, 5)
    values = {
        "Name": name, "s": s, "S": _cap(s), "o": o, "p": p, "r": r, "desc": desc,
        "at": at, "At": _cap(at), "place": place, "short": short, "goal": goal,
        "achieved": achieved,
        "obstacle": rng.choice(_OBSTACLES).format(s=s, o=o),
        "helper": rng.choice(_HELPERS), "lesson": rng.choice(_LESSONS),
    }  # fmt: skip
    paragraphs = [rng.choice(_STORY_PARTS[part]).format(**values) for part in _STORY_PLANS[k]]
    return Instance(
        slots={"name": name, "desc": desc, "goal": goal, "k": k},
        output="\n\n".join(paragraphs),
        check=_check(_paragraphs("exactly", k), _keywords(name), _at_least(30 * k)),
    )


register_family(
    "short_story",
    "longform",
    [
        "Write a short story in {k} paragraphs about {name}, {desc}, who wants to {goal}.",
        "Tell me a story, {k} paragraphs long, about {name} ({desc}) trying to {goal}.",
        "Write a {k}-paragraph story in the past tense. The main character is {name}, {desc}, "
        "whose dream is to {goal}.",
        "Create a short tale of {k} paragraphs: {name}, {desc}, sets out to {goal} and meets a "
        "setback on the way.",
        "I need a bedtime story in exactly {k} paragraphs. It should follow {name}, {desc}, who "
        "hopes to {goal}.",
        "Write a story with a beginning, a problem and a happy ending ({k} paragraphs) about "
        "{desc} called {name} who wants to {goal}.",
        "Spin a little narrative around {name}, {desc}. Goal: to {goal}. Length: {k} paragraphs.",
        "Could you invent {k} paragraphs of fiction in which {name}, {desc}, struggles and "
        "finally manages to {goal}?",
    ],
    _short_story,
    "A past-tense story in k paragraphs (3-5): setting and goal, obstacle, effort, help, "
    "resolution; checked: exactly k paragraphs, the character named, at least 30k words.",
)

# --------------------------------------------------------------------------- idea_list

# subject -> (keyword the intro uses, ideas as (title, one explanatory sentence))
IDEAS = {
    "ways to save energy at home": ("energy", (
        ("Switch to LED bulbs", "They use far less electricity than old incandescent bulbs and "
         "last much longer."),
        ("Turn devices off at the wall", "Many gadgets keep drawing power on standby."),
        ("Wash clothes at a lower temperature", "Most of the energy a washing machine uses goes "
         "into heating water."),
        ("Seal draughts around doors and windows", "Keeping warm air in lets the heating work "
         "less."),
        ("Turn the thermostat down by one degree", "You will barely notice the difference, but "
         "your heating bill will."),
        ("Dry laundry on a rack", "A tumble dryer is one of the most power-hungry appliances in "
         "a home."),
        ("Boil only the water you need", "Filling the kettle to the top wastes energy every "
         "time."),
    )),
    "gift ideas for a friend who loves cooking": ("cooking", (
        ("A good chef's knife", "A sharp, well-balanced knife makes every meal easier to "
         "prepare."),
        ("A cookbook from a new cuisine", "It invites them to explore flavours they have not "
         "tried yet."),
        ("A set of quality spices", "Small jars are easy to use up and always welcome."),
        ("A cast-iron pan", "It lasts for decades and works on the hob and in the oven."),
        ("A cooking class for two", "An experience you share is often remembered longer than "
         "an object."),
        ("A wooden chopping board", "It is gentle on knives and looks lovely on the counter."),
        ("A jar of homemade jam", "Something you made yourself shows real thought."),
    )),
    "things to do on a rainy weekend": ("rainy", (
        ("Visit a museum", "Many museums are free, and a rainy day is the perfect excuse to "
         "explore one."),
        ("Bake something new", "A fresh loaf or a tray of biscuits makes the whole home smell "
         "wonderful."),
        ("Start a jigsaw puzzle", "It is calming and easy to return to whenever you like."),
        ("Hold a film marathon", "Pick a theme, make some popcorn and settle in."),
        ("Go swimming at an indoor pool", "You are going to get wet anyway, so you may as well "
         "enjoy it."),
        ("Write letters to old friends", "A handwritten letter is a rare and welcome surprise."),
        ("Learn a new board game", "Rain is the best time to finally read those rules."),
    )),
    "ways to stay focused while studying": ("studying", (
        ("Put your phone in another room", "Out of sight really does mean out of mind."),
        ("Work in short blocks", "Twenty-five minutes of work followed by a five-minute break "
         "keeps your mind fresh."),
        ("Set one clear goal per session", "Knowing exactly what you want to finish makes it "
         "easier to start."),
        ("Keep your desk tidy", "Fewer things in view means fewer distractions."),
        ("Drink water and eat properly", "A tired, hungry brain wanders more easily."),
        ("Explain the topic out loud", "Teaching an idea to an imaginary listener shows you "
         "what you have not understood yet."),
        ("Study at the same time each day", "A routine makes it easier to settle down to work."),
    )),
    "ways to reduce food waste": ("food waste", (
        ("Plan your meals for the week", "You will buy only what you need."),
        ("Write a shopping list", "It stops you from picking up things you already have."),
        ("Store food properly", "Many fruits and vegetables last longer in the fridge."),
        ("Freeze leftovers", "A frozen portion becomes a quick meal on a busy evening."),
        ("Use the oldest food first", "Moving older items to the front of the fridge helps you "
         "remember them."),
        ("Cook with scraps", "Vegetable peelings and stalks make a good stock or soup."),
        ("Understand date labels", "A best-before date is about quality, while a use-by date is "
         "about safety."),
    )),
    "ways to make friends in a new city": ("friends", (
        ("Join a club or class", "Seeing the same people every week makes conversation easy."),
        ("Volunteer for a local cause", "Working side by side with others builds friendships "
         "quickly."),
        ("Say yes to invitations", "Even a short visit to a party can lead to a new friendship."),
        ("Become a regular somewhere", "Staff and other regulars at a café soon start to "
         "recognise you."),
        ("Talk to your neighbours", "A simple hello in the hallway can lead to a coffee."),
        ("Join a sports team", "Sharing wins and losses brings people together."),
        ("Be patient", "Real friendships take time to grow, so keep showing up."),
    )),
}  # fmt: skip
_IDEA_INTROS = (
    "Here are {n} {subject}:",
    "Here are {n} {subject} worth trying:",
    "If you are looking for {subject}, here are {n} to start with:",
)
_IDEA_CLOSERS = (
    "",
    "",
    "Even trying one or two of these can make a real difference.",
    "Pick the ones that suit you best and build from there.",
)


def _idea_list(rng: random.Random) -> Instance:
    subject = rng.choice(sorted(IDEAS))
    keyword, ideas = IDEAS[subject]
    k = rng.randint(3, 7)
    chosen = rng.sample(ideas, k)
    bold = rng.random() < 0.5
    lines = [f"- **{t}**: {e}" if bold else f"- {t}. {e}" for t, e in chosen]
    n_word = _NUMBER_WORDS[k] if rng.random() < 0.5 else str(k)
    parts = [rng.choice(_IDEA_INTROS).format(n=n_word, subject=subject), "\n".join(lines)]
    closer = rng.choice(_IDEA_CLOSERS)
    if closer:
        parts.append(closer)
    return Instance(
        slots={"subject": subject, "k": k},
        output="\n\n".join(parts),
        check=_check(
            {"type": "bullet_count", "relation": "exactly", "n": k},
            _keywords(keyword),
            _at_least(8 * k),
        ),
    )


register_family(
    "idea_list",
    "longform",
    [
        "Give me {k} {subject}, as bullet points with a sentence of explanation each.",
        "List {k} {subject}. For every idea, add one sentence saying why it helps.",
        "What are {k} good {subject}? Use a bulleted list and explain each briefly.",
        "Suggest {k} {subject} in a Markdown bullet list, each with a short explanation.",
        "I need {k} {subject}. Bullet them and give a reason for each.",
        "Brainstorm {k} {subject} for me, one bullet per idea plus a line on why.",
        "Could you come up with {k} {subject}? Put each on its own bullet and justify it in a "
        "sentence.",
        "Share {k} {subject} - bulleted, with a brief reason attached to every one.",
    ],
    _idea_list,
    "k bulleted ideas (3-7) with one explanatory sentence each, after an intro line; checked: "
    "exactly k bullets, the subject named, at least 8k words.",
)

# --------------------------------------------------------------------------- pros_cons

# subject -> (keyword, pros, cons)
PROS_CONS = {
    "working from home": ("home", (
        "There is no daily commute, which saves time and money.",
        "Many people find it easier to concentrate without office interruptions.",
        "Flexible hours can make it simpler to fit work around family life.",
        "Employers can save on office space.",
    ), (
        "It can feel lonely without colleagues nearby.",
        "The line between work time and free time can blur.",
        "Quick questions take longer to answer over chat or email.",
        "Not everyone has a quiet room or a good desk at home.",
    )),
    "living in a big city": ("city", (
        "There are more jobs and career opportunities.",
        "Public transport often makes a car unnecessary.",
        "Museums, theatres and restaurants are close at hand.",
        "You meet people from many different backgrounds.",
    ), (
        "Rent and house prices are usually high.",
        "Streets can be noisy and crowded.",
        "Green space is often limited.",
        "Air quality can be worse than in the countryside.",
    )),
    "owning a dog": ("dog", (
        "A dog is loyal and affectionate company.",
        "Daily walks keep the owner active.",
        "Dogs can help people meet their neighbours.",
        "Many dogs help children learn responsibility.",
    ), (
        "Dogs need time and attention every day.",
        "Food, vet visits and insurance add up to a real cost.",
        "Travelling is harder when someone must look after the dog.",
        "Some rented homes do not allow pets.",
    )),
    "electric cars": ("electric", (
        "They produce no exhaust fumes while driving.",
        "Charging at home usually costs less than filling up with petrol.",
        "They are quiet and smooth to drive.",
        "They have fewer moving parts, so servicing is often simpler.",
    ), (
        "They usually cost more to buy than similar petrol cars.",
        "Public chargers can be hard to find in some areas.",
        "Charging takes longer than filling a tank.",
        "Batteries slowly lose some of their range as they age.",
    )),
    "learning online": ("online", (
        "You can study at your own pace and at any time of day.",
        "Courses from around the world are available from home.",
        "It often costs less than studying in person.",
        "Lessons can be paused, replayed and reviewed.",
    ), (
        "It takes strong self-discipline to keep going.",
        "There is less face-to-face contact with teachers and classmates.",
        "A reliable internet connection is essential.",
        "Practical skills can be hard to learn through a screen.",
    )),
    "public transport": ("transport", (
        "It is usually cheaper than running a car.",
        "You can read or rest instead of driving.",
        "A full bus or train produces far less pollution per passenger than cars.",
        "There is no need to look for parking.",
    ), (
        "Timetables may not match your plans.",
        "Buses and trains can be crowded at rush hour.",
        "Some rural areas have few services.",
        "Delays and cancellations are outside your control.",
    )),
}  # fmt: skip
_VERDICTS = (
    "Overall, {subject} suits some people far better than others, so it is worth weighing "
    "these points against your own situation.",
    "In the end, whether {subject} is right for you depends on which of these points matter "
    "most in your life.",
    "On balance, {subject} has clear benefits, but the drawbacks are real and worth planning for.",
)


def _pros_cons(rng: random.Random) -> Instance:
    subject = rng.choice(sorted(PROS_CONS))
    keyword, pros, cons = PROS_CONS[subject]
    k = rng.randint(2, 4)
    heading = rng.choice(("## {}", "**{}**", "{}:"))
    parts = [
        rng.choice(
            (
                f"Here are the main pros and cons of {subject}.",
                f"Like most choices, {subject} has both advantages and disadvantages.",
            )
        ),
        heading.format("Pros") + "\n" + "\n".join(f"- {p}" for p in rng.sample(pros, k)),
        heading.format("Cons") + "\n" + "\n".join(f"- {c}" for c in rng.sample(cons, k)),
        rng.choice(_VERDICTS).format(subject=subject),
    ]
    return Instance(
        slots={"subject": subject, "k": k},
        output="\n\n".join(parts),
        check=_check(
            _keywords("pros", "cons", keyword),
            {"type": "bullet_count", "relation": "exactly", "n": 2 * k},
            _at_least(10 * k + 20),
        ),
    )


register_family(
    "pros_cons",
    "longform",
    [
        "What are the pros and cons of {subject}? Give {k} of each as bullet points under a "
        "Pros heading and a Cons heading, then a short conclusion.",
        "List {k} pros and {k} cons of {subject}, in two bulleted sections labelled Pros and "
        "Cons, and finish with a one-sentence verdict.",
        "Weigh up {subject}: a Pros section with {k} bullets, a Cons section with {k} bullets "
        "and a brief conclusion.",
        "I'm thinking about {subject}. Write a Pros list and a Cons list ({k} bullets each) and "
        "sum up at the end.",
        "Give a balanced answer on {subject}: {k} bullet-point pros, {k} bullet-point cons "
        "(with Pros and Cons headings), and an overall verdict.",
        "Write a short pros-and-cons breakdown of {subject} with {k} points per side under "
        "headings Pros and Cons, bulleted, plus a closing verdict.",
        "Help me decide about {subject}. Two labelled sections, Pros and Cons, each holding {k} "
        "bullets; then tell me how it balances out.",
        "Set out the upsides and downsides of {subject} - exactly {k} bulleted Pros and {k} "
        "bulleted Cons, each group under its own heading - and close with a summary.",
    ],
    _pros_cons,
    "Pros and cons of a subject: intro, k bulleted pros and k cons under headings (k 2-4), a "
    "verdict; checked: 'pros', 'cons' and the subject named, exactly 2k bullets, enough words.",
)

# --------------------------------------------------------------------------- how_to_guide

# task -> (keyword, steps with a reason each, closing tip)
HOW_TO = {
    "brew a pot of loose-leaf tea": ("tea", (
        "Heat fresh water. Water that has been boiled again and again tastes flat.",
        "Warm the teapot with a splash of hot water. A warm pot keeps the tea at the right "
        "temperature.",
        "Add about one teaspoon of leaves per cup. Use a little more for a stronger brew.",
        "Pour on the water at the right temperature. Black tea likes boiling water, while green "
        "tea prefers water that has cooled a little.",
        "Let the tea steep for a few minutes. Three to five minutes suits most black teas.",
        "Strain the tea into cups. Leaving the leaves in too long makes the tea bitter.",
    ), "Keep loose tea in an airtight tin away from light so it stays fresh."),
    "repot a houseplant": ("pot", (
        "Choose a new pot a little larger than the old one. A pot that is far too big holds too "
        "much wet soil.",
        "Make sure the new pot has drainage holes. Roots rot if water cannot escape.",
        "Water the plant a day before. Moist roots slide out of the old pot more easily.",
        "Ease the plant out and loosen the roots gently. This encourages them to grow into the "
        "new soil.",
        "Set the plant in fresh potting mix at the same depth as before. Burying the stem too "
        "deeply can harm it.",
        "Water it well and keep it out of strong sun for a week. This gives the roots time to "
        "settle.",
    ), "Spring is usually the best time to repot, when plants are starting to grow."),
    "make a simple monthly budget": ("budget", (
        "Work out your total monthly income. Use the amount you actually receive after tax.",
        "List your fixed costs, such as rent and bills. These are the same every month.",
        "Estimate your variable costs, such as food and transport. Old bank statements help.",
        "Set an amount to save. Treat saving like a bill that must be paid first.",
        "Subtract your costs and savings from your income. If the result is negative, look for "
        "costs to trim.",
        "Track your spending during the month. Comparing real spending with the plan shows "
        "where money goes.",
    ), "Review the budget every month, because income and costs change over time."),
    "prepare for a job interview": ("interview", (
        "Research the organisation. Knowing what it does lets you give thoughtful answers.",
        "Read the job description again. Match your experience to each of its main points.",
        "Prepare short stories about your past work. Concrete examples are more convincing than "
        "general claims.",
        "Practise answering common questions out loud. Speaking the answers makes them flow "
        "more naturally.",
        "Prepare two or three questions of your own. Good questions show genuine interest.",
        "Plan your journey and arrive a little early. Being rushed makes it harder to stay calm.",
    ), "Afterwards, send a short thank-you message to the people who interviewed you."),
    "start running as a beginner": ("running", (
        "Get a pair of comfortable running shoes. Good shoes help prevent sore feet and knees.",
        "Begin with a mix of walking and running. Short running intervals let your body adapt.",
        "Run at an easy pace. You should be able to hold a conversation while you run.",
        "Go out three times a week. Rest days give your muscles time to recover.",
        "Increase your running time slowly. A small increase each week lowers the risk of "
        "injury.",
        "Stretch gently and drink water afterwards. This helps you feel better the next day.",
    ), "Set a small goal, such as running for twenty minutes without stopping, to stay "
       "motivated."),
    "plant a small vegetable garden": ("garden", (
        "Pick a sunny spot. Most vegetables need at least six hours of sunlight a day.",
        "Prepare the soil by removing weeds and mixing in compost. Rich soil feeds the plants.",
        "Choose easy crops such as lettuce, radishes and beans. They grow quickly and reward "
        "beginners.",
        "Sow seeds at the depth given on the packet. Seeds planted too deep may never come up.",
        "Water regularly, especially in dry weather. Young plants have shallow roots.",
        "Harvest your vegetables when they are ready. Picking often encourages many plants to "
        "produce more.",
    ), "Keep a notebook of what you planted and when, so next year is even easier."),
}  # fmt: skip
_HOW_TO_INTROS = (
    "Here is how to {task}, step by step.",
    "It is easier than it sounds to {task}. Follow these steps.",
    "Want to {task}? These steps will get you there.",
)


def _how_to_guide(rng: random.Random) -> Instance:
    task = rng.choice(sorted(HOW_TO))
    keyword, steps, tip = HOW_TO[task]
    drop = rng.randrange(len(steps) + 3)  # usually keep all steps, else drop a middle one
    steps = [st for i, st in enumerate(steps) if i != drop or i in (0, len(steps) - 1)]
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    closing = rng.choice(("Tip: ", "One last tip: ", "Finally, a tip: ")) + tip
    return Instance(
        slots={"task": task},
        output="\n\n".join([rng.choice(_HOW_TO_INTROS).format(task=task), listed, closing]),
        check=_check(
            {"type": "numbered_list_count", "relation": "at_least", "n": 4},
            _keywords(keyword),
            _at_least(70),
        ),
    )


register_family(
    "how_to_guide",
    "longform",
    [
        "Write a step-by-step guide on how to {task}, with a short introduction and numbered "
        "steps.",
        "How do I {task}? Explain it as a numbered list, with a reason for each step.",
        "Give me clear, numbered instructions to {task}, and add a tip at the end.",
        "Write a beginner's guide to how to {task}: one intro sentence, then numbered steps "
        "that each say why.",
        "I want to {task}. Walk me through it in numbered steps.",
        "Explain how to {task} to someone doing it for the first time. Number the steps.",
        "Draft a numbered walkthrough for anyone hoping to {task}, briefly justifying each step.",
        "Never tried to {task} before - what should I do, in order? A numbered list please.",
    ],
    _how_to_guide,
    "An intro sentence, six numbered steps each with its reason, and a closing tip (110-150 "
    "words); checked: at least 4 numbered steps, the subject named, at least 70 words.",
)

# --------------------------------------------------------------------------- persuasive_essay

# claim -> (keyword, reasons as (point, support), (objection, rebuttal), conclusion)
ESSAYS = {
    "cities should build more bike lanes": ("bike lanes", (
        ("Bike lanes make cycling safer.", "When cyclists have their own space, they no longer "
         "have to share a narrow road with fast traffic, and more people feel confident enough "
         "to ride."),
        ("Cycling is good for public health.", "Regular riding strengthens the heart and helps "
         "people stay active without setting aside extra time for exercise."),
        ("More cycling means cleaner air.", "Every trip made by bicycle instead of by car "
         "produces no exhaust fumes and takes a vehicle off crowded streets."),
        ("Bike lanes use space efficiently.", "A single lane can carry many more people on "
         "bicycles than in cars, which eases congestion for everyone."),
    ), ("Some drivers worry that bike lanes take space away from cars.", "Yet when more people "
        "cycle, fewer cars compete for the road, so traffic often flows just as well."),
     "Building more bike lanes is a practical investment in safer, healthier and cleaner "
     "cities."),
    "every child should learn to swim": ("swim", (
        ("Swimming is a life-saving skill.", "Children who can swim are far better prepared if "
         "they fall into a pool, a river or the sea."),
        ("Swimming is excellent exercise.", "It works the whole body and builds strength and "
         "stamina while being gentle on the joints."),
        ("Swimming builds confidence.", "Learning to move comfortably in deep water teaches "
         "children that practice turns fear into skill."),
        ("Swimming opens the door to other activities.", "Sailing, canoeing and snorkelling are "
         "all safer and more enjoyable for a confident swimmer."),
    ), ("Some families say lessons are expensive or hard to reach.", "That is exactly why "
        "schools and towns should offer them, so that no child misses out."),
     "Teaching every child to swim protects lives and gives young people a skill they will "
     "use for decades."),
    "schools should teach cooking": ("cooking", (
        ("Cooking is a basic life skill.", "Every adult needs to feed themselves, and many "
         "leave school without knowing how to prepare a simple, healthy meal."),
        ("Cooking encourages healthier eating.", "Children who understand ingredients are more "
         "likely to choose fresh food over heavily processed meals."),
        ("Cooking brings other subjects to life.", "Measuring, weighing and timing use "
         "mathematics, and watching bread rise or sugar melt is practical science."),
        ("Cooking saves money.", "Meals made at home usually cost far less than takeaways or "
         "ready meals."),
    ), ("Critics say the timetable is already full.", "Yet a few lessons each term are enough "
        "to teach the basics, and they support subjects that are already taught."),
     "Teaching cooking in schools prepares young people for independent, healthy lives."),
    "public libraries deserve more funding": ("libraries", (
        ("Libraries give everyone access to books.", "People who cannot afford to buy books can "
         "still read widely, which makes opportunity fairer."),
        ("Libraries provide free internet and computers.", "Many people rely on them to apply "
         "for jobs, fill in forms or study online."),
        ("Libraries support children's reading.", "Story times and reading challenges help "
         "children learn to love books from an early age."),
        ("Libraries are community spaces.", "They offer a warm, safe place to study, meet others "
         "and join clubs without having to spend money."),
    ), ("Some argue that the internet has made libraries unnecessary.", "In fact, libraries are "
        "often where people without home internet get online at all."),
     "Funding public libraries is one of the most effective ways to support learning and "
     "community life."),
    "people should spend less time on their phones": ("phones", (
        ("Less screen time can improve sleep.", "Bright screens late in the evening make it "
         "harder for many people to fall asleep."),
        ("Putting the phone away helps concentration.", "Constant notifications interrupt work "
         "and study, and it takes time to refocus after each one."),
        ("Time away from screens leaves room for other things.", "Reading, exercise, hobbies "
         "and conversations all need time that scrolling quietly uses up."),
        ("Face-to-face contact strengthens relationships.", "Friends and family notice when we "
         "give them our full attention."),
    ), ("Phones are useful tools, and some people need them for work.", "The point is not to "
        "give them up, but to use them deliberately rather than by habit."),
     "Spending less time on our phones is a small change that can make daily life calmer and "
     "richer."),
    "towns should plant more trees": ("trees", (
        ("Trees cool streets in summer.", "Their shade and the water they release from their "
         "leaves can make a street noticeably cooler on a hot day."),
        ("Trees clean the air.", "Their leaves trap dust, and they take in carbon dioxide as "
         "they grow."),
        ("Trees support wildlife.", "Birds, insects and squirrels find food and shelter in even "
         "a single street tree."),
        ("Trees make places more pleasant.", "Leafy streets are nicer to walk along, and many "
         "people find green surroundings relaxing."),
    ), ("Some people worry about the cost of planting and care.", "But trees last for decades, "
        "and their benefits grow as they do."),
     "Planting more trees is one of the simplest ways for a town to become healthier and more "
     "beautiful."),
}  # fmt: skip
# claim -> (a sentence of context for the introduction, one example per reason, in order)
_ESSAY_EXTRAS = {
    "cities should build more bike lanes": (
        "More and more people would like to cycle to work or school, but many say the roads "
        "feel too dangerous.",
        ("Cities such as Copenhagen and Amsterdam, which have built large networks of protected "
         "lanes, have some of the highest cycling rates in the world.",
         "Even a short daily ride to work or school adds up to hours of exercise every week.",
         "Fewer cars also means less noise, which makes streets more pleasant for everyone.",
         "The space needed to park one car can hold several bicycles."),
    ),
    "every child should learn to swim": (
        "Water is everywhere in our lives, from pools and rivers to beaches on holiday.",
        ("Drowning is one of the leading causes of accidental death among children around the "
         "world.",
         "Because water supports the body, swimming suits people of almost every age and level "
         "of fitness.",
         "That confidence often carries over into other challenges, at school and beyond.",
         "Many holidays and days out are built around beaches, lakes and pools."),
    ),
    "schools should teach cooking": (
        "Many young people leave home knowing how to order food but not how to cook it.",
        ("A young adult who can cook a handful of simple dishes depends far less on expensive "
         "convenience food.",
         "Learning where food comes from can also make children more willing to try vegetables.",
         "Lessons like these show students why the skills they learn in other classes matter.",
         "Over a year, the savings from cooking at home can be considerable."),
    ),
    "public libraries deserve more funding": (
        "Public libraries are among the few places where anyone can spend time without spending "
        "money.",
        ("A single library card can give a whole family access to thousands of books.",
         "For someone looking for work, a free computer and a helpful librarian can make a real "
         "difference.",
         "Children who are read to regularly often start school with a larger vocabulary.",
         "For older people who live alone, a weekly visit can be an important chance to talk to "
         "others."),
    ),
    "people should spend less time on their phones": (
        "For many people, the phone is the first thing they check in the morning and the last "
        "thing they see at night.",
        ("Sleep experts often advise putting screens away for an hour before bed.",
         "Even a phone lying face down on the desk can pull attention away from the task.",
         "Many people who track their screen time are surprised by how many hours it adds up "
         "to.",
         "A meal without phones on the table often leads to better conversation."),
    ),
    "towns should plant more trees": (
        "Most people enjoy a leafy street, yet many towns have fewer trees than they once did.",
        ("On a hot summer day, a shaded street can feel much cooler than one in full sun.",
         "Street trees also catch rainwater, which helps reduce flooding after heavy storms.",
         "A single mature oak can support hundreds of species of insects.",
         "Studies have linked green surroundings with lower stress."),
    ),
}  # fmt: skip
_ESSAY_OPENERS = (
    "Few changes would do as much good for as little cost.",
    "It is a question that affects almost everyone, whether they realise it or not.",
    "The case for it is stronger than many people assume.",
    "Some ideas are obvious once you look at the evidence.",
    "This is a debate worth having.",
    "Good decisions start with good reasons.",
)
_ESSAY_ORDINALS = (
    ("First, ", "Second, ", "Third, ", "Finally, "),
    ("To begin with, ", "Next, ", "What is more, ", "Last but not least, "),
    ("The first reason is that ", "Another reason is that ", "In addition, ", "Finally, "),
    ("One reason is that ", "A second reason is that ", "A third point is that ", "Lastly, "),
)
_ESSAY_ENDINGS = (
    "The benefits would be felt by almost everyone.",
    "The sooner we start, the sooner we will see the results.",
    "It is a choice we will not regret.",
    "The reasons are strong, and the costs are small.",
    "Now is the time to act.",
    "",
)


def _persuasive_essay(rng: random.Random) -> Instance:
    claim = rng.choice(sorted(ESSAYS))
    keyword, reasons, (objection, rebuttal), conclusion = ESSAYS[claim]
    context, examples = _ESSAY_EXTRAS[claim]
    order = rng.sample(range(len(reasons)), 4)
    ordinals = rng.choice(_ESSAY_ORDINALS)
    thesis = rng.choice(("I believe that {c}.", "In my view, {c}.", "I am convinced that {c}."))
    opener = rng.choice((rng.choice(_ESSAY_OPENERS), context))
    intro = f"{opener} {thesis.format(c=claim)} " + rng.choice(
        (
            "There are four main reasons for this.",
            "Four reasons make the case clear.",
            "Let me explain why.",
            "Here is why.",
            "The reasons are clear.",
            "The arguments for it are strong.",
            "Consider the evidence.",
        )
    )
    body = []
    for i, r in enumerate(order):
        point, support = reasons[r]
        # The example makes most reasons concrete; leaving it out sometimes varies the length.
        example = f" {examples[r]}" if rng.random() < 0.75 else ""
        body.append(f"{ordinals[i]}{_decap(point)} {support}{example}")
    counter = f"{objection} {rebuttal}"
    ending = (
        rng.choice(("In conclusion, ", "To sum up, ", "All in all, "))
        + _decap(conclusion)
        + " "
        + rng.choice(_ESSAY_ENDINGS)
    ).strip()
    output = "\n\n".join([intro, *body, counter, ending])
    return Instance(
        slots={"claim": claim},
        output=output,
        check=_check(_paragraphs("at_least", 4), _keywords(keyword), _at_least(140), _at_most(400)),
    )


register_family(
    "persuasive_essay",
    "longform",
    [
        "Write a short persuasive essay arguing that {claim}.",
        "Argue that {claim}. Give reasons, answer an objection and end with a conclusion.",
        "Write an opinion essay of several paragraphs on why {claim}.",
        "Convince me that {claim}. Structure it as an essay with an introduction and a conclusion.",
        "Compose a persuasive piece for the school magazine: {claim}.",
        "Make the case, in essay form, that {claim}.",
        "Take the position that {claim} and defend it in a few well-argued paragraphs, "
        "including a counterargument.",
        "Here is a claim: {claim}. Write the essay a debate champion would write to support it.",
    ],
    _persuasive_essay,
    "A seven-paragraph persuasive essay: thesis, four reasons with examples, objection and "
    "rebuttal, conclusion (175-260 words); checked: at least 4 paragraphs, the subject named, "
    "140-400 words.",
)

# --------------------------------------------------------------------------- itinerary

# city -> (mornings, afternoons, evenings), each an activity phrase
CITIES = {
    "Rome": (
        ("visit the Colosseum early, before the queues grow",
         "walk through the Roman Forum and up the Palatine Hill",
         "see the Vatican Museums and the Sistine Chapel"),
        ("step inside the Pantheon and wander over to Piazza Navona",
         "toss a coin into the Trevi Fountain and climb the Spanish Steps",
         "relax in the gardens of the Villa Borghese"),
        ("have dinner in Trastevere and try cacio e pepe",
         "watch the sunset from the Gianicolo hill",
         "stroll past the floodlit fountains and finish with a gelato"),
    ),
    "Paris": (
        ("explore the Louvre, starting with its most famous paintings",
         "climb Montmartre to the basilica of Sacré-Cœur",
         "see the Impressionist paintings at the Musée d'Orsay"),
        ("stroll through the Luxembourg Gardens",
         "go up the Eiffel Tower for a view over the city",
         "browse the bookstalls along the Seine"),
        ("take a boat cruise on the Seine",
         "have dinner at a bistro in the Marais",
         "watch the Eiffel Tower sparkle on the hour after dark"),
    ),
    "Kyoto": (
        ("walk through the thousands of red gates at Fushimi Inari shrine",
         "see the Golden Pavilion, Kinkaku-ji, reflected in its pond",
         "wander through the Arashiyama bamboo grove"),
        ("taste local snacks at Nishiki Market",
         "visit the wooden terrace of Kiyomizu-dera temple",
         "join a traditional tea ceremony"),
        ("stroll through the old streets of the Gion district",
         "walk along the Kamo River as the lights come on",
         "enjoy a kaiseki dinner of many small seasonal dishes"),
    ),
    "Lisbon": (
        ("ride the historic tram 28 through the old town",
         "visit the Belém Tower and the Jerónimos Monastery",
         "explore the winding lanes of the Alfama district"),
        ("try a pastel de nata at a café in Belém",
         "take in the view from one of the city's hilltop viewpoints",
         "visit the Lisbon Oceanarium"),
        ("listen to fado in a small restaurant in Alfama",
         "watch the sunset over the river Tagus",
         "have grilled sardines for dinner in a local tavern"),
    ),
    "Edinburgh": (
        ("tour Edinburgh Castle on its great volcanic rock",
         "climb Arthur's Seat for a view across the city",
         "visit the National Museum of Scotland"),
        ("walk down the Royal Mile to the Palace of Holyroodhouse",
         "explore the quiet riverside streets of Dean Village",
         "relax in Princes Street Gardens"),
        ("join a ghost tour of the Old Town",
         "hear live folk music in a traditional pub",
         "walk up Calton Hill at sunset"),
    ),
    "New York": (
        ("walk across the Brooklyn Bridge",
         "take the ferry to the Statue of Liberty",
         "see the Metropolitan Museum of Art"),
        ("explore Central Park",
         "walk along the High Line",
         "visit the Museum of Modern Art"),
        ("see a Broadway show",
         "watch the lights come on in Times Square",
         "have dinner in Chinatown"),
    ),
}  # fmt: skip
_SLOT_NOTES = (
    ("Go early to avoid the crowds.", "Wear comfortable shoes.", "Allow about two hours.",
     "Have a good breakfast first.", "Bring water and a hat in summer.",
     "Mornings are the quietest time."),
    ("Stop for a long lunch nearby.", "Take your time here.", "Leave room for a coffee break.",
     "Bring a camera.", "Pace yourself; there is a lot to see.", "Afternoons can be busy."),
    ("Book ahead if you can.", "It is a relaxed way to end the day.", "Bring a light jacket.",
     "Dinner is served late here.", "Ask locals for their favourite spot.",
     "Evenings are the liveliest time."),
)  # fmt: skip
_TRIP_TIPS = (
    "Buy a public transport pass on your first day.",
    "Leave some free time for wandering; the best moments are often unplanned.",
    "Check opening hours before you go, as they can change.",
    "Book the most popular sights online to skip the queues.",
    "Carry a refillable water bottle and some cash for small cafés.",
    "Learn a few words of the local language; people appreciate it.",
)


def _itinerary(rng: random.Random) -> Instance:
    city = rng.choice(sorted(CITIES))
    days = rng.randint(2, 3)
    picks = [rng.sample(range(3), days) for _ in range(3)]  # per slot, one activity per day
    blocks = []
    for d in range(days):
        lines = [f"Day {d + 1}"]
        for slot, label in enumerate(("Morning", "Afternoon", "Evening")):
            activity = CITIES[city][slot][picks[slot][d]]
            note = f" {rng.choice(_SLOT_NOTES[slot])}" if rng.random() < 0.5 else ""
            lines.append(f"{label}: {_cap(activity)}.{note}")
        blocks.append("\n".join(lines))
    intro = rng.choice(
        (
            f"Here is a {days}-day plan for {city} that mixes famous sights with time to relax.",
            f"This {days}-day itinerary covers the highlights of {city} at a comfortable pace.",
        )
    )
    output = "\n\n".join([intro, *blocks, "Tip: " + rng.choice(_TRIP_TIPS)])
    return Instance(
        slots={"city": city, "days": days},
        output=output,
        check=_check(
            _keywords(city, f"Day {days}"),
            {"type": "not", "constraint": _keywords(f"Day {days + 1}")},
            {"type": "keyword_frequency", "keyword": "morning", "relation": "at_least", "n": days},
            {"type": "keyword_frequency", "keyword": "evening", "relation": "at_least", "n": days},
            _at_least(25 * days),
        ),
    )


register_family(
    "itinerary",
    "longform",
    [
        "Plan a {days}-day trip to {city}. For each day (Day 1, Day 2, ...), suggest a morning, "
        "an afternoon and an evening activity.",
        "Write a {days}-day itinerary for {city}, labelled Day 1, Day 2 and so on, with "
        "morning, afternoon and evening plans.",
        "I have {days} days in {city}. Give me a day-by-day plan (Day 1, Day 2, ...) with "
        "something for the morning, afternoon and evening.",
        "Suggest how to spend {days} days in {city}: list each day as Day N, with Morning, "
        "Afternoon and Evening.",
        "Make me a travel plan for {days} days in {city}. Split each day into morning, "
        "afternoon and evening, and head each one Day 1, Day 2, etc.",
        "Create an itinerary covering {days} days in {city}, one block per day labelled Day N, "
        "each with morning, afternoon and evening activities.",
        "Heading to {city} for {days} days. Sketch a schedule, Day 1 onwards, filling every "
        "morning, afternoon and evening.",
        "What should a first-time visitor do during {days} days in {city}? Lay it out as Day 1, "
        "Day 2 and so on, morning to evening.",
    ],
    _itinerary,
    "A 2-3 day city itinerary with morning, afternoon and evening activities per day; checked: "
    "the city and Day N named, no Day N+1, 'morning' and 'evening' at least N times each.",
)

# --------------------------------------------------------------------------- toast_speech

_OCCASIONS = {
    "retirement": (
        "the retirement party for {Name}",
        "For {years} years, {Name} has been the person we all turned to when something went wrong.",
        (
            "Enjoy every minute of the time ahead; you have earned it.",
            "May the years ahead be full of long lunches and no alarm clocks.",
            "We will miss you more than you know.",
        ),
    ),
    "birthday": (
        "{Name}'s {age}th birthday party",
        "It hardly seems possible that {Name} is {age} today.",
        (
            "Here is to many more happy and healthy years.",
            "May this year be your best one yet.",
            "Happy birthday, with all our love.",
        ),
    ),
    "farewell": (
        "the farewell party for {Name}",
        "We always knew that {Name} was destined for big things, and now the adventure begins.",
        (
            "Wherever you go, you will always have friends here.",
            "Good luck, and come back to visit often.",
            "We cannot wait to hear about the adventures ahead.",
        ),
    ),
}
_TOAST_GREETINGS = (
    "Good evening, everyone.",
    "Hello, everyone.",
    "Could I have your attention, please?",
    "Friends and family, welcome.",
    "Right, can everyone hear me at the back?",
    "If I could just interrupt the fun for a moment.",
)
_RELATIONS = ("my oldest friend", "my colleague", "my neighbour", "my cousin", "our team leader")
_ANECDOTES = (
    "I still remember the day {Name} turned up with a flask of soup for everyone during a "
    "power cut, as if it were the most natural thing in the world.",
    "I will never forget the time {Name} got us hopelessly lost on a walk, then somehow led us "
    "to the best little café any of us had ever found.",
    "Years ago, {Name} stayed up half the night to help me finish a project I was sure would "
    "fail, and it turned out to be one of my proudest moments.",
    "Anyone who has seen {Name} try to sing at a party knows that enthusiasm matters more than "
    "talent.",
)
_QUALITIES = (
    ("kind", "generous", "funny"),
    ("patient", "loyal", "brave"),
    ("thoughtful", "cheerful", "honest"),
    ("curious", "warm", "determined"),
)


def _toast_speech(rng: random.Random) -> Instance:
    name, _, _, _, _, _ = rng.choice(CHARACTERS)
    occasion = rng.choice(sorted(_OCCASIONS))
    event, opening, wish = _OCCASIONS[occasion]
    values = {"Name": name, "years": rng.randint(12, 35), "age": rng.choice((30, 40, 50, 60))}
    relation = rng.choice(_RELATIONS)
    a, b, c = rng.choice(_QUALITIES)
    welcome = rng.choice(
        (
            f"For those who do not know me, {name} is {relation}, and I am honoured to say a "
            "few words tonight.",
            f"I have known {name}, {relation}, for a long time, so I jumped at the chance to "
            "speak tonight.",
            f"When I was asked to say something about {name}, {relation}, I said yes at once.",
        )
    )
    thanks = rng.choice(
        (
            "Thank you all for coming.",
            "It is wonderful to see so many friends here.",
            "What a lovely crowd we have tonight.",
            "I promise to keep this short.",
            "",
        )
    )
    paragraphs = [
        " ".join(
            p
            for p in (
                rng.choice(_TOAST_GREETINGS),
                welcome,
                thanks,
            )
            if p
        ),
        opening.format(**values) + " " + rng.choice(_ANECDOTES).format(Name=name),
        f"If I had to describe {name} in three words, they would be {a}, {b} and {c}. "
        + rng.choice(
            (
                f"{name} has a rare gift for making everyone feel welcome.",
                f"Those of us who know {name} well are lucky, and we know it.",
            )
        ),
        rng.choice(
            (
                "So please raise your glasses.",
                "Will you all stand and raise a glass?",
                "Let's lift our glasses together.",
                "Please join me in a toast.",
                "Glasses up, everyone.",
                "It is time for the toast.",
            )
        )
        + f" To {name}! {rng.choice(wish)}",
    ]
    return Instance(
        slots={"name": name, "event": event.format(**values), "relation": relation},
        output="\n\n".join(paragraphs),
        check=_check(_keywords(name), _paragraphs("at_least", 3), _at_least(70), _at_most(400)),
    )


register_family(
    "toast_speech",
    "longform",
    [
        "Write a short toast for {event}. {name} is {relation}.",
        "I need to give a speech at {event}. Write it for me; {name} is {relation}.",
        "Compose a warm, funny toast to {name}, {relation}, for {event}.",
        "Draft a few paragraphs I can say at {event} to honour {name} ({relation}).",
        "Write a heartfelt speech for {event}, ending with a toast to {name}, who is {relation}.",
        "Help me prepare what to say at {event}: {name} is {relation}.",
        "Put together the words I will raise my glass with at {event} - {name} is {relation}.",
        "Everyone expects me to speak at {event}. {name} is {relation}. What should I say?",
    ],
    _toast_speech,
    "A four-paragraph toast (welcome, anecdote, qualities, raised glasses; 90-130 words); "
    "checked: the person named, at least 3 paragraphs, 70-400 words.",
)

# --------------------------------------------------------------------------- product_description

# kind -> whole sentences describing an invented product of that kind
PRODUCTS = {
    "water bottle": (
        "Its double-walled steel keeps drinks cold for up to a day.",
        "The leak-proof lid opens with one hand.",
        "A wide mouth makes it easy to add ice and to clean.",
        "The powder-coated finish resists scratches and gives a secure grip.",
        "It holds 750 millilitres, enough for a long walk or a day at your desk.",
    ),
    "backpack": (
        "A padded sleeve keeps a laptop of up to fifteen inches safe.",
        "The water-resistant fabric shrugs off a sudden shower.",
        "Wide, cushioned straps spread the weight across your shoulders.",
        "A hidden back pocket keeps your passport and keys out of sight.",
        "Side pockets hold a water bottle and an umbrella.",
    ),
    "desk lamp": (
        "Three brightness levels let you move from reading to relaxing with a single touch.",
        "The flexible arm puts light exactly where you need it.",
        "Its LED bulb uses little power and lasts for years.",
        "A warm colour setting is easy on the eyes in the evening.",
        "The weighted base keeps it steady on any desk.",
    ),
    "travel mug": (
        "Its vacuum-insulated walls keep coffee hot for hours.",
        "The lid locks shut, so it will not spill in your bag.",
        "It fits most car cup holders.",
        "The stainless steel inside does not hold on to old flavours.",
        "It holds 350 millilitres, just right for a large coffee.",
    ),
    "rain jacket": (
        "The waterproof shell and taped seams keep you dry in a downpour.",
        "Vents under the arms let heat escape on uphill walks.",
        "The hood adjusts so it moves with your head.",
        "It packs into its own pocket, small enough for any bag.",
        "Reflective details help you stay visible after dark.",
    ),
}
BRANDS = ("Alder", "Nimbus", "Kestrel", "Juniper", "Orbit", "Willow", "Harbor", "Pebble")
_PRODUCT_HOOKS = (
    "Meet the {brand} {kind}, designed for people who want things that simply work.",
    "The {brand} {kind} is built for everyday life, from the morning commute to the weekend.",
    "Say hello to the {brand} {kind}, a thoughtful design made to last.",
    "Small details make a big difference, and the {brand} {kind} is full of them.",
    "The {brand} {kind} takes an everyday object and makes it better.",
    "Looking for a {kind} you will not need to replace? Try the {brand}.",
)
_PRODUCT_CLOSERS = (
    "Available in four colours, the {brand} {kind} makes a great gift or a well-earned treat.",
    "Order the {brand} {kind} today and see the difference for yourself.",
    "The {brand} {kind} comes with a two-year guarantee, so you can buy with confidence.",
    "Once you try the {brand} {kind}, you will wonder how you managed without it.",
    "Add the {brand} {kind} to your basket and enjoy free delivery.",
)


def _product_description(rng: random.Random) -> Instance:
    kind = rng.choice(sorted(PRODUCTS))
    brand = rng.choice(BRANDS)
    features = rng.sample(PRODUCTS[kind], 4)
    output = "\n\n".join(
        [
            rng.choice(_PRODUCT_HOOKS).format(brand=brand, kind=kind) + " " + features[0],
            " ".join(features[1:]),
            rng.choice(_PRODUCT_CLOSERS).format(brand=brand, kind=kind),
        ]
    )
    return Instance(
        slots={"brand": brand, "kind": kind},
        output=output,
        check=_check(_keywords(brand), _paragraphs("at_least", 2), _at_least(50), _at_most(250)),
        system="You are a copywriter for an online shop. Write lively, honest product copy.",
    )


register_family(
    "product_description",
    "longform",
    [
        "Write a product description for the {brand} {kind}.",
        "Write the shop listing for a new {kind} called the {brand}.",
        "Create an appealing description of the {brand} {kind} for our website.",
        "We are launching the {brand} {kind}. Write a short advertisement for it.",
        "Describe the {brand} {kind} to a customer in a few lively paragraphs.",
        "Draft marketing copy for the {brand}, our new {kind}.",
        "Sell me the {brand} {kind}: a couple of paragraphs I could put on the product page.",
        "A customer asks what makes the {brand} {kind} special. Answer with a short, punchy "
        "description.",
    ],
    _product_description,
    "A three-paragraph product description of an invented product (60-80 words); checked: the "
    "product named, at least 2 paragraphs, 50-250 words.",
)
