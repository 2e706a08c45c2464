"""Knowledge and content pools for the long-form families (`families_c.py`).

Everything here is hand-written and meant to be *true*: general, well-established facts about
everyday topics, phrased as stand-alone sentences so that generators can sample, reorder and
join them without a dangling "it" or "this". Each topic groups its sentences by aspect
(`ASPECTS`: what it is, how it works, history, why it matters, fun facts); the first "what"
sentence always names the topic's keyword, so any text that includes it is about the topic.

Public pools other modules may reuse:

- `TOPIC_FACTS`: topic -> every sentence about it, in aspect order.
- `TOPIC_ASPECTS`: topic -> aspect -> sentences.
- `TOPIC_KEYWORD`: topic -> the word a text about it must contain.
- `passage(rng, topic=None, sentences=(4, 7))`: a short factual passage about a topic.
"""

from __future__ import annotations

import random

ASPECTS = ("what", "how", "history", "why", "fun")

# topic -> (keyword, {aspect: sentences}); the first "what" sentence contains the keyword.
_TOPICS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "bees": ("bees", {
        "what": (
            "Bees are flying insects closely related to wasps and ants.",
            "There are more than 20,000 known species of bees, and most of them live alone "
            "rather than in hives.",
        ),
        "how": (
            "Honey bees live in colonies with a single queen, thousands of female workers and, "
            "in summer, a few hundred male drones.",
            "Worker bees collect nectar and pollen from flowers and carry them back to the hive.",
            "Inside the hive, bees turn nectar into honey by adding enzymes and fanning it with "
            "their wings until much of the water evaporates.",
            "A honey bee can tell its sisters where to find food by performing a waggle dance.",
        ),
        "history": (
            "People have collected honey from wild bees for thousands of years, and a cave "
            "painting in Spain shows honey gathering about 8,000 years ago.",
            "Beekeepers in ancient Egypt kept bees in hives made of clay and mud.",
        ),
        "why": (
            "Bees pollinate many of the fruits, vegetables and nuts that people eat.",
            "As they move from flower to flower, bees carry pollen that helps plants make seeds.",
            "Many bee species are under pressure from habitat loss, pesticides and disease.",
        ),
        "fun": (
            "Honey kept in a sealed container can stay edible for a very long time.",
            "Bees can see ultraviolet light, which reveals patterns on flowers that human eyes "
            "cannot see.",
        ),
    }),
    "volcanoes": ("volcano", {
        "what": (
            "A volcano is an opening in the Earth's crust through which molten rock, ash and "
            "gases escape.",
            "Molten rock is called magma while it is underground and lava once it reaches the "
            "surface.",
        ),
        "how": (
            "Volcanoes often form where magma rises at the boundaries between tectonic plates.",
            "Pressure from gases dissolved in the magma can cause an explosive eruption.",
            "Some volcanoes erupt gently, with runny lava flowing slowly down their slopes.",
            "Other volcanoes form over hot spots in the Earth's mantle, as the Hawaiian Islands "
            "did.",
        ),
        "history": (
            "In the year 79, an eruption of Mount Vesuvius buried the Roman towns of Pompeii and "
            "Herculaneum.",
            "The 1815 eruption of Mount Tambora in Indonesia cooled the climate so much that 1816 "
            "became known as the Year Without a Summer.",
        ),
        "why": (
            "Volcanic ash breaks down into fertile soil, which is why farms often surround "
            "volcanoes.",
            "Scientists watch active volcanoes with instruments that detect small earthquakes "
            "and changes in the shape of the ground.",
            "Heat from volcanic areas can be used to produce geothermal energy.",
        ),
        "fun": (
            "Many of the Earth's volcanoes are hidden beneath the oceans.",
            "Olympus Mons on Mars is one of the largest volcanoes known in the solar system.",
        ),
    }),
    "tea": ("tea", {
        "what": (
            "Tea is a drink made by pouring hot water over the dried leaves of the tea plant, "
            "Camellia sinensis.",
            "Green, black, white and oolong teas all come from the same plant but are processed "
            "in different ways.",
        ),
        "how": (
            "For black tea, the leaves are left to oxidise, which darkens them and gives a "
            "stronger flavour.",
            "For green tea, the leaves are heated soon after picking so that they stay green.",
            "Tea tastes best when the water temperature and steeping time suit the type of leaf.",
        ),
        "history": (
            "Tea has been drunk in China for thousands of years.",
            "Tea reached Europe in the seventeenth century and became especially popular in "
            "Britain.",
        ),
        "why": (
            "After water, tea is one of the most widely consumed drinks in the world.",
            "Tea contains caffeine, though usually less than a similar cup of coffee.",
            "In many cultures, offering a cup of tea is a sign of welcome.",
        ),
        "fun": (
            "Herbal drinks such as peppermint or chamomile are often called tea even though they "
            "do not come from the tea plant.",
            "Tea bags became popular during the twentieth century.",
        ),
    }),
    "bicycles": ("bicycle", {
        "what": (
            "A bicycle is a two-wheeled vehicle that a rider moves by pushing pedals.",
            "Bicycles are used for commuting, sport, delivery work and leisure.",
        ),
        "how": (
            "The pedals turn a chain that drives the rear wheel.",
            "Gears let a rider pedal comfortably on steep hills as well as on flat roads.",
            "A rider keeps a moving bicycle upright by making small steering corrections.",
            "Brakes press pads against the wheel rim or a disc to slow the bicycle down.",
        ),
        "history": (
            "The earliest bicycles of the nineteenth century had no pedals, and riders pushed "
            "them along with their feet.",
            "The safety bicycle of the 1880s, with two wheels of similar size and a chain drive, "
            "set the basic design that most bicycles still follow.",
        ),
        "why": (
            "Cycling is a good form of exercise that strengthens the heart and legs.",
            "Bicycles produce no exhaust fumes, so they are a clean way to make short trips in "
            "cities.",
            "A bicycle takes up far less space on the road and in parking than a car.",
        ),
        "fun": (
            "The Tour de France, first held in 1903, is one of the most famous bicycle races in "
            "the world.",
            "The Netherlands has more bicycles than people.",
        ),
    }),
    "the water cycle": ("water cycle", {
        "what": (
            "The water cycle is the continuous movement of water between the land, the oceans "
            "and the air.",
            "The water cycle has no real beginning or end, because the same water moves around "
            "it again and again.",
        ),
        "how": (
            "Heat from the sun makes water evaporate from oceans, lakes and rivers.",
            "As water vapour rises and cools, it condenses into tiny droplets that form clouds.",
            "When the droplets grow heavy enough, they fall back to the ground as rain, snow or "
            "hail.",
            "Rainwater runs into rivers or soaks into the ground, and much of it eventually "
            "returns to the sea.",
        ),
        "history": (
            "Ancient Greek thinkers wondered where rivers got their endless supply of water.",
            "In the seventeenth century, the French scientist Pierre Perrault measured rainfall "
            "and showed that it was enough to feed the rivers.",
        ),
        "why": (
            "The water cycle delivers fresh water to plants, animals and people.",
            "The water cycle also moves heat around the planet and shapes the weather.",
            "Plants add water to the air by releasing water vapour from their leaves.",
        ),
        "fun": (
            "Most of the Earth's water is salty ocean water, and only a small share is fresh.",
            "The water in a glass today may have fallen as rain many times before.",
        ),
    }),
    "libraries": ("library", {
        "what": (
            "A library is a collection of books and other materials that people can read or "
            "borrow.",
            "Modern libraries lend not only books but also films, music, e-books and sometimes "
            "tools.",
        ),
        "how": (
            "Many libraries organise their books with systems such as the Dewey Decimal "
            "Classification so that readers can find them.",
            "A library card lets a member borrow items and return them by a due date.",
            "Librarians help visitors find information and choose books.",
        ),
        "history": (
            "The Library of Alexandria in ancient Egypt was one of the most famous libraries of "
            "the ancient world.",
            "Free public libraries spread to many countries during the nineteenth century.",
        ),
        "why": (
            "Libraries give everyone access to books and information, whatever they can afford.",
            "Many libraries offer quiet places to study, free internet access and reading groups "
            "for children.",
            "Libraries help preserve old documents and local history for future generations.",
        ),
        "fun": (
            "The Library of Congress in Washington holds millions of books and is one of the "
            "largest libraries in the world.",
            "Some regions run mobile libraries that bring books to villages in a van.",
        ),
    }),
    "photosynthesis": ("photosynthesis", {
        "what": (
            "Photosynthesis is the process by which green plants use sunlight to make their own "
            "food.",
            "Algae and some bacteria also carry out photosynthesis.",
        ),
        "how": (
            "During photosynthesis, plants take in carbon dioxide from the air and water from "
            "the soil.",
            "A green pigment called chlorophyll captures the energy of sunlight.",
            "With that energy, the plant turns carbon dioxide and water into sugar and releases "
            "oxygen.",
            "In most plants, photosynthesis takes place mainly in the leaves.",
        ),
        "history": (
            "In the eighteenth century, Jan Ingenhousz showed that plants need light to produce "
            "oxygen.",
            "Scientists worked out the detailed chemical steps of photosynthesis during the "
            "twentieth century.",
        ),
        "why": (
            "Photosynthesis produces much of the oxygen that animals and people breathe.",
            "Almost every food chain on Earth begins with organisms that carry out "
            "photosynthesis.",
            "Photosynthesis also removes carbon dioxide from the air.",
        ),
        "fun": (
            "Leaves look green because chlorophyll reflects green light while absorbing red and "
            "blue light.",
            "Tiny ocean algae called phytoplankton carry out a large share of the world's "
            "photosynthesis.",
        ),
    }),
    "chess": ("chess", {
        "what": (
            "Chess is a board game for two players, played on a board of sixty-four squares.",
            "Each player starts with sixteen pieces: a king, a queen, two rooks, two bishops, "
            "two knights and eight pawns.",
        ),
        "how": (
            "Each type of chess piece moves in its own way; bishops move diagonally and rooks "
            "move in straight lines.",
            "The goal of chess is to checkmate the opposing king, so that it is attacked and "
            "cannot escape.",
            "The player with the white pieces always moves first.",
            "A game of chess can also end in a draw, for example by stalemate or by agreement.",
        ),
        "history": (
            "Chess developed from an Indian game called chaturanga, played around the sixth "
            "century.",
            "The modern rules of chess, including the powerful queen, took shape in Europe at "
            "the end of the fifteenth century.",
        ),
        "why": (
            "Chess trains planning, concentration and patience.",
            "Chess is played by millions of people around the world, in clubs, schools and "
            "online.",
            "In 1997 the computer Deep Blue defeated the world champion Garry Kasparov in a "
            "chess match.",
        ),
        "fun": (
            "The number of possible games of chess is far larger than the number of atoms in "
            "the observable universe.",
            "The knight moves in an L shape and can jump over other pieces.",
        ),
    }),
    "bread": ("bread", {
        "what": (
            "Bread is a staple food made from flour and water, usually baked in an oven.",
            "Most bread also contains salt and a raising agent such as yeast.",
        ),
        "how": (
            "Kneading the dough develops gluten, which makes bread stretchy and able to hold gas.",
            "Yeast feeds on sugars in the dough and releases carbon dioxide, which makes the "
            "bread rise.",
            "In the oven, heat sets the structure of the bread and browns its crust.",
            "Sourdough bread is raised by a starter of wild yeast and bacteria instead of "
            "packaged yeast.",
        ),
        "history": (
            "Remains found in Jordan show that people were making flatbread thousands of years "
            "before farming began.",
            "The ancient Egyptians were among the first people to bake raised bread.",
        ),
        "why": (
            "Bread is eaten in some form in almost every culture.",
            "Whole grain bread provides fibre, which is good for digestion.",
            "In many languages, bread is a symbol of food and of sharing a meal.",
        ),
        "fun": (
            "Flatbreads such as naan, tortillas and pita are made in many different ways around "
            "the world.",
            "The smell of baking bread comes largely from browning reactions in the crust.",
        ),
    }),
    "tides": ("tides", {
        "what": (
            "Tides are the regular rise and fall of the sea level along coasts.",
            "Most coasts have two high tides and two low tides roughly every day.",
        ),
        "how": (
            "Tides are caused mainly by the pull of the moon's gravity on the Earth's oceans.",
            "The sun also affects tides, though its effect is smaller than the moon's.",
            "When the sun and the moon line up, their pulls combine to cause extra-large spring "
            "tides.",
            "When the sun and the moon pull at right angles, the smaller neap tides occur.",
        ),
        "history": (
            "Sailors and fishermen have studied tides for thousands of years to plan safe "
            "voyages.",
            "Isaac Newton explained tides with his theory of gravity in the seventeenth century.",
        ),
        "why": (
            "Tides shape coastlines and create rich habitats in rock pools and mudflats.",
            "Ships need to know the tides to enter shallow harbours safely.",
            "Some power stations use the flow of tides to generate electricity.",
        ),
        "fun": (
            "The Bay of Fundy in Canada has some of the highest tides in the world.",
            "The word spring in spring tide has nothing to do with the season.",
        ),
    }),
    "rainbows": ("rainbow", {
        "what": (
            "A rainbow is an arc of colours that appears in the sky when sunlight shines "
            "through drops of water.",
            "The colours of a rainbow are usually listed as red, orange, yellow, green, blue, "
            "indigo and violet.",
        ),
        "how": (
            "Rainbows form when sunlight enters raindrops, bends, reflects off the back of each "
            "drop and bends again as it leaves.",
            "Each colour of light bends by a slightly different amount, so white sunlight "
            "spreads out into a band of colours.",
            "To see a rainbow, you need the sun behind you and rain in front of you.",
            "A fainter second rainbow sometimes appears outside the first, with its colours in "
            "reverse order.",
        ),
        "history": (
            "Isaac Newton used a prism to show that white light is made of many colours.",
            "People in many cultures told myths about rainbows, often describing them as "
            "bridges or paths.",
        ),
        "why": (
            "Rainbows helped scientists understand how light behaves.",
            "A rainbow is a sign that the sun is shining while rain is falling nearby.",
        ),
        "fun": (
            "From an aeroplane, a rainbow can sometimes be seen as a full circle.",
            "No two people see exactly the same rainbow, because each sees light from different "
            "drops.",
            "Rainbows also appear in the spray of waterfalls and garden hoses.",
        ),
    }),
    "the moon": ("moon", {
        "what": (
            "The moon is the Earth's only natural satellite.",
            "The moon is a little more than a quarter of the Earth's width and has no "
            "breathable air.",
        ),
        "how": (
            "The moon takes about 27 days to orbit the Earth.",
            "The moon does not make its own light; it shines by reflecting sunlight.",
            "As the moon orbits, we see different amounts of its sunlit side, which gives us "
            "its phases.",
            "The same side of the moon always faces the Earth.",
        ),
        "history": (
            "In 1969 the Apollo 11 astronauts Neil Armstrong and Buzz Aldrin became the first "
            "people to walk on the moon.",
            "Galileo used one of the first telescopes to observe mountains and craters on the "
            "moon.",
        ),
        "why": (
            "The moon's gravity is the main cause of the ocean tides.",
            "Many calendars, including the Islamic calendar, are based on the cycles of the moon.",
        ),
        "fun": (
            "Footprints left on the moon can last for a very long time because there is no wind "
            "to blow them away.",
            "Craters on the moon were made by rocks from space crashing into its surface.",
            "The moon is slowly moving away from the Earth, by nearly four centimetres each year.",
        ),
    }),
    "coral reefs": ("coral reefs", {
        "what": (
            "Coral reefs are underwater structures built by tiny animals called coral polyps.",
            "Coral reefs grow mostly in warm, shallow and clear tropical seas.",
        ),
        "how": (
            "Coral polyps build hard skeletons of calcium carbonate, and over many years these "
            "skeletons pile up into reefs.",
            "Many corals get most of their food from tiny algae that live inside their tissues.",
            "The algae need sunlight to make food, which is why most reef-building corals live "
            "in clear, shallow water.",
        ),
        "history": (
            "Some coral reefs have been growing for thousands of years.",
            "Charles Darwin proposed an explanation of how ring-shaped coral atolls form.",
        ),
        "why": (
            "Coral reefs cover a tiny part of the ocean floor but are home to about a quarter of "
            "all marine species.",
            "Coral reefs protect coasts by breaking the force of waves.",
            "Coral reefs support fishing and tourism for millions of people.",
        ),
        "fun": (
            "The Great Barrier Reef off Australia is the largest coral reef system in the world.",
            "When the water gets too warm, corals can expel their algae and turn white, which "
            "is called coral bleaching.",
        ),
    }),
    "penguins": ("penguins", {
        "what": (
            "Penguins are flightless seabirds that live almost entirely in the Southern "
            "Hemisphere.",
            "There are around eighteen species of penguins, from the small little penguin to "
            "the tall emperor penguin.",
        ),
        "how": (
            "Penguins use their stiff flippers to swim fast underwater.",
            "A thick layer of fat and tightly packed feathers keep penguins warm in cold water.",
            "Penguins eat fish, squid and krill, which they catch while diving.",
            "Many penguins breed in large and noisy colonies.",
        ),
        "history": (
            "Antarctic explorers of the early twentieth century wrote detailed accounts of "
            "penguin colonies.",
            "Fossils show that some ancient penguins were taller than any penguin alive today.",
        ),
        "why": (
            "Penguins are an important part of ocean food webs.",
            "Scientists count penguins to learn how the oceans around them are changing.",
        ),
        "fun": (
            "Emperor penguin fathers keep the egg warm on their feet through the Antarctic "
            "winter.",
            "The Galapagos penguin lives near the equator.",
            "The black backs and white fronts of penguins help hide them from predators in the "
            "water.",
        ),
    }),
    "earthquakes": ("earthquake", {
        "what": (
            "An earthquake is a sudden shaking of the ground caused by movement inside the Earth.",
            "Many thousands of earthquakes happen every year, but most are too small for people "
            "to feel.",
        ),
        "how": (
            "The outer layer of the Earth is broken into large tectonic plates that slowly move.",
            "When rocks along a fault suddenly slip, they release energy as seismic waves.",
            "Seismic waves travel through the ground and make it shake.",
            "The point on the surface directly above where an earthquake starts is called the "
            "epicentre.",
        ),
        "history": (
            "The 1906 San Francisco earthquake and the fires that followed destroyed much of the "
            "city.",
            "In the year 132, the Chinese scholar Zhang Heng built an early instrument to detect "
            "earthquakes.",
        ),
        "why": (
            "Earthquakes under the sea can trigger dangerous tsunamis.",
            "Engineers design buildings in earthquake zones to sway without collapsing.",
            "Seismometers record earthquakes and help scientists study the inside of the Earth.",
        ),
        "fun": (
            "The strength of an earthquake is usually given on the moment magnitude scale.",
            "Japan has many earthquakes because it lies where several tectonic plates meet.",
        ),
    }),
    "recycling": ("recycling", {
        "what": (
            "Recycling is the process of turning used materials into new products.",
            "Common materials for recycling include paper, cardboard, glass, metal cans and many "
            "plastics.",
        ),
        "how": (
            "After collection, recycling centres sort materials by type, often with magnets, "
            "screens and machines.",
            "Paper is mixed with water into a pulp and then pressed into new paper.",
            "Glass and metal can be melted down and reshaped many times.",
            "Recycling works best when items are clean and put in the right bin.",
        ),
        "history": (
            "People have reused and recycled materials such as metal for centuries.",
            "During the Second World War, many countries collected scrap metal and paper to "
            "support the war effort.",
        ),
        "why": (
            "Recycling reduces the amount of rubbish sent to landfill.",
            "Recycling saves raw materials and often uses less energy than making things from "
            "scratch.",
            "Making aluminium cans from recycled metal uses far less energy than making them "
            "from new ore.",
        ),
        "fun": (
            "A recycled aluminium can may be back on a shop shelf in a matter of weeks.",
            "Reducing and reusing come before recycling in the well-known phrase reduce, reuse, "
            "recycle.",
        ),
    }),
    "the printing press": ("printing press", {
        "what": (
            "The printing press is a machine that presses inked type onto paper to make many "
            "copies of a text.",
            "Before printing, books in Europe were usually copied by hand, often by monks.",
        ),
        "how": (
            "Early printers arranged individual metal letters, called movable type, into lines "
            "and pages.",
            "The type was inked and pressed firmly onto paper with a screw press.",
            "Once a page was set, hundreds of copies could be printed much faster than by hand.",
        ),
        "history": (
            "Johannes Gutenberg developed a printing press with movable metal type in Germany "
            "around 1440.",
            "The Gutenberg Bible, printed in the 1450s, was one of the first major books printed "
            "this way in Europe.",
            "Printing with woodblocks, and later with movable type, was used in China and Korea "
            "centuries before Gutenberg.",
        ),
        "why": (
            "The printing press made books much cheaper and more widely available.",
            "By spreading books and pamphlets quickly, the printing press helped ideas travel "
            "across Europe.",
            "Cheaper books helped more people learn to read.",
        ),
        "fun": (
            "Printing presses were later powered by steam, which made newspapers cheap enough "
            "for millions of readers.",
        ),
    }),
    "coffee": ("coffee", {
        "what": (
            "Coffee is a drink made from the roasted and ground seeds of the coffee plant, "
            "usually called beans.",
            "The two most common kinds of coffee are arabica and robusta.",
        ),
        "how": (
            "Coffee cherries are picked, and the seeds inside are dried and then roasted.",
            "Roasting turns the beans brown and brings out the flavour and aroma of coffee.",
            "Hot water passes through ground coffee to extract its flavour, whether in a filter, "
            "a press or an espresso machine.",
        ),
        "history": (
            "According to legend, coffee was discovered in Ethiopia by a goat herder named Kaldi.",
            "By the fifteenth century coffee was being drunk in Yemen, and coffee houses later "
            "spread across the Middle East and Europe.",
        ),
        "why": (
            "Coffee contains caffeine, which can make people feel more alert.",
            "Coffee is one of the most widely traded agricultural products in the world.",
            "For many people, meeting friends for coffee is an important social habit.",
        ),
        "fun": (
            "Brazil is the largest producer of coffee in the world.",
            "Espresso is made by forcing hot water through finely ground coffee under pressure.",
        ),
    }),
    "owls": ("owls", {
        "what": (
            "Owls are birds of prey, and most of them hunt at night.",
            "There are more than two hundred species of owls, found on every continent except "
            "Antarctica.",
        ),
        "how": (
            "Owls have large, forward-facing eyes that help them see in dim light.",
            "Soft, fringed feathers let owls fly almost silently.",
            "Many owls can find prey by sound alone, thanks to their sharp hearing.",
            "Owls can turn their heads much further than people can, which makes up for eyes "
            "that cannot move in their sockets.",
        ),
        "history": (
            "In ancient Greece, the little owl was a symbol of Athena, the goddess of wisdom.",
            "Owls appear in the art and stories of many cultures, often as wise figures.",
        ),
        "why": (
            "Owls help control the numbers of mice, rats and other small animals.",
            "Some farmers put up nest boxes to encourage barn owls to live nearby.",
        ),
        "fun": (
            "Owls swallow small prey whole and later cough up pellets of fur and bones.",
            "The snowy owl often hunts during the day in the Arctic summer.",
        ),
    }),
    "glaciers": ("glacier", {
        "what": (
            "A glacier is a large, slowly moving mass of ice formed from snow that has built up "
            "over many years.",
            "Glaciers are found in high mountains and in polar regions such as Greenland and "
            "Antarctica.",
        ),
        "how": (
            "As layers of snow pile up, the lower layers are squeezed into dense ice.",
            "The weight of the ice makes a glacier flow slowly downhill.",
            "As they move, glaciers grind rock and carve valleys into a U shape.",
        ),
        "history": (
            "During the last ice age, glaciers covered large parts of North America and northern "
            "Europe.",
            "In the nineteenth century, Louis Agassiz argued that glaciers had once covered much "
            "more of the Earth.",
        ),
        "why": (
            "Glaciers and ice sheets hold most of the world's fresh water.",
            "Meltwater from mountain glaciers feeds rivers that many communities rely on.",
            "Scientists study ice from glaciers to learn about past climates.",
        ),
        "fun": (
            "Glacier ice can look blue because dense ice absorbs red light.",
            "Many glaciers around the world are shrinking as the climate warms.",
        ),
    }),
    "the human heart": ("heart", {
        "what": (
            "The heart is a muscular organ that pumps blood around the body.",
            "The human heart is roughly the size of a fist and sits in the chest between the "
            "lungs.",
        ),
        "how": (
            "The heart has four chambers: two atria and two ventricles.",
            "The right side of the heart sends blood to the lungs to pick up oxygen.",
            "The left side of the heart pumps oxygen-rich blood out to the rest of the body.",
            "Valves inside the heart keep blood flowing in one direction.",
        ),
        "history": (
            "In the seventeenth century, William Harvey showed that the heart pumps blood in a "
            "circuit around the body.",
            "Christiaan Barnard performed the first successful human heart transplant in 1967.",
        ),
        "why": (
            "The heart delivers oxygen and nutrients to every part of the body.",
            "Regular exercise, a balanced diet and not smoking help keep the heart healthy.",
        ),
        "fun": (
            "An adult heart at rest usually beats between sixty and one hundred times a minute.",
            "The sound of a heartbeat comes from the heart valves closing.",
        ),
    }),
    "sleep": ("sleep", {
        "what": (
            "Sleep is a natural state of rest in which the body and mind recover.",
            "Most adults need about seven to nine hours of sleep each night.",
        ),
        "how": (
            "During the night, sleep passes through repeating cycles of light sleep, deep sleep "
            "and REM sleep.",
            "Most vivid dreams happen during REM sleep, when the eyes move quickly under the "
            "eyelids.",
            "A body clock called the circadian rhythm helps control when people feel sleepy.",
            "Darkness triggers the release of melatonin, a hormone that helps the body prepare "
            "for sleep.",
        ),
        "history": (
            "Before electric lighting, the sleep of most people followed the rhythm of daylight "
            "more closely.",
            "Scientists discovered REM sleep in the 1950s.",
        ),
        "why": (
            "Sleep helps the brain store memories and learn new skills.",
            "A lack of sleep makes it harder to concentrate and can weaken the immune system.",
            "Regular bedtimes and less bright screen light late at night can improve sleep.",
        ),
        "fun": (
            "Newborn babies sleep for most of the day.",
            "Dolphins can rest one half of the brain at a time, which lets them keep swimming "
            "while they sleep.",
        ),
    }),
    "trees": ("trees", {
        "what": (
            "Trees are tall plants with a woody trunk, branches and leaves.",
            "Trees can live for a very long time, and some bristlecone pines are more than four "
            "thousand years old.",
        ),
        "how": (
            "Roots anchor a tree in the ground and take in water and minerals.",
            "Water travels up through the trunk to the leaves, where photosynthesis makes food.",
            "Each year many trees add a new layer of wood, which shows up as a growth ring.",
            "Deciduous trees drop their leaves in autumn, while most evergreen trees keep them "
            "all year.",
        ),
        "history": (
            "People have used wood for fuel, tools and buildings since prehistoric times.",
            "Some communities have protected sacred trees and ancient woods for centuries.",
        ),
        "why": (
            "Trees release oxygen and store carbon.",
            "Trees provide shade, shelter and food for many animals.",
            "Tree roots hold soil in place and help prevent erosion.",
        ),
        "fun": (
            "Counting the growth rings of a felled tree gives an estimate of its age.",
            "The tallest trees in the world are coast redwoods in California.",
        ),
    }),
    "lighthouses": ("lighthouse", {
        "what": (
            "A lighthouse is a tower with a bright light that guides ships and warns them of "
            "danger.",
            "Lighthouses are built on coasts, islands, rocks and at the entrances to harbours.",
        ),
        "how": (
            "A large lens, such as a Fresnel lens, focuses the light of the lamp into a powerful "
            "beam.",
            "Each lighthouse flashes in its own pattern so that sailors can tell which one they "
            "are seeing.",
            "In fog, many lighthouses also sounded a foghorn to warn ships.",
        ),
        "history": (
            "The Pharos of Alexandria, built in the third century BC, was one of the Seven "
            "Wonders of the Ancient World.",
            "Augustin Fresnel invented his lens in the 1820s, and it made lighthouse beams "
            "visible much further out to sea.",
            "For a long time, lighthouse keepers lived at lighthouses to tend the lamps.",
        ),
        "why": (
            "Lighthouses helped prevent shipwrecks on dangerous coasts.",
            "Today most lighthouses are automated, and ships also rely on satellite navigation.",
        ),
        "fun": (
            "Many old lighthouses are now museums or holiday homes.",
            "Lighthouse towers are often painted with stripes or bands so that they are easy to "
            "recognise by day.",
        ),
    }),
    "maps": ("map", {
        "what": (
            "A map is a drawing that shows the features of an area, such as roads, rivers, towns "
            "or mountains.",
            "Maps can show anything from a single building to the whole world.",
        ),
        "how": (
            "A map uses a scale to show how distances on paper compare with real distances.",
            "Symbols and a key, or legend, explain what the marks on a map mean.",
            "Contour lines on a map join points of the same height and show the shape of hills.",
            "Because the Earth is round, every flat map of the world distorts it in some way.",
        ),
        "history": (
            "The Babylonians drew one of the oldest surviving world maps on a clay tablet.",
            "In 1569 Gerardus Mercator published a world map projection that helped sailors "
            "plot straight courses.",
        ),
        "why": (
            "Maps help people find their way and plan journeys.",
            "Maps are used to plan cities, study the weather and manage farmland.",
            "Today satellites and computers produce maps that can be updated quickly.",
        ),
        "fun": (
            "A globe shows the shapes of the continents more accurately than a flat map.",
            "Most maps put north at the top, but that is a convention rather than a rule.",
        ),
    }),
    "clouds": ("clouds", {
        "what": (
            "Clouds are visible masses of tiny water droplets or ice crystals floating in the "
            "air.",
            "Clouds are named by their shape and height, for example cumulus, stratus and "
            "cirrus.",
        ),
        "how": (
            "Clouds form when moist air rises and cools until its water vapour condenses.",
            "The droplets in a cloud form around tiny specks of dust, salt or smoke.",
            "Most clouds look white because their droplets scatter all the colours of sunlight.",
            "Thick clouds look grey because little light passes through them.",
        ),
        "history": (
            "In 1802 Luke Howard proposed the Latin names for cloud types that are still used "
            "today.",
            "Weather forecasters have long watched clouds to predict rain and storms.",
        ),
        "why": (
            "Clouds bring rain and snow, which supply fresh water.",
            "Clouds help control the temperature of the Earth by reflecting sunlight and "
            "trapping heat.",
        ),
        "fun": (
            "A cumulonimbus cloud can grow taller than Mount Everest.",
            "Fog is simply a cloud that forms at ground level.",
        ),
    }),
    "elephants": ("elephants", {
        "what": (
            "Elephants are the largest land animals on Earth.",
            "There are three species of elephants: the African bush elephant, the African forest "
            "elephant and the Asian elephant.",
        ),
        "how": (
            "The trunk of an elephant is a long nose and upper lip that it uses to breathe, "
            "smell, drink and grab food.",
            "Elephants eat grass, leaves, bark and fruit, and they spend much of the day feeding.",
            "A herd of elephants is usually led by an older female called the matriarch.",
            "Elephants flap their large ears to help cool their bodies.",
        ),
        "history": (
            "Elephants have worked alongside people in Asia for thousands of years.",
            "Mammoths, close relatives of elephants, lived during the last ice age.",
        ),
        "why": (
            "Elephants shape their habitats by clearing paths and spreading seeds in their dung.",
            "Elephants are threatened by habitat loss and by poaching for ivory.",
        ),
        "fun": (
            "Elephants communicate with low rumbles that can travel a long distance.",
            "The tusks of an elephant are very long incisor teeth.",
        ),
    }),
    "the piano": ("piano", {
        "what": (
            "The piano is a musical instrument played by pressing keys on a keyboard.",
            "A standard modern piano has eighty-eight keys, fifty-two white and thirty-six black.",
        ),
        "how": (
            "When a key is pressed, a felt-covered hammer strikes a string inside the piano.",
            "Pedals let the player sustain notes or make the sound softer.",
            "Longer and thicker strings play the lower notes of a piano.",
        ),
        "history": (
            "Bartolomeo Cristofori invented the piano in Italy around the year 1700.",
            "The original name of the piano, pianoforte, means soft-loud, because it can play "
            "both quietly and loudly.",
        ),
        "why": (
            "The piano can play melody and harmony at the same time, so it suits many kinds of "
            "music.",
            "Composers such as Mozart, Beethoven and Chopin wrote famous music for the piano.",
            "The piano is often used to teach music theory.",
        ),
        "fun": (
            "A grand piano has horizontal strings, while an upright piano has vertical strings.",
            "A concert grand piano contains more than two hundred strings.",
        ),
    }),
    "soap": ("soap", {
        "what": (
            "Soap is a substance used with water for washing and cleaning.",
            "Traditional soap is made by mixing fats or oils with a strong alkali such as lye.",
        ),
        "how": (
            "Soap molecules have one end that is attracted to water and another end that is "
            "attracted to oil and grease.",
            "When you wash, soap surrounds grease and dirt so that water can rinse them away.",
            "Soap also breaks apart the outer layer of many germs, including some viruses.",
            "Washing hands well takes about twenty seconds of scrubbing with soap and water.",
        ),
        "history": (
            "People in ancient Babylon made a kind of soap thousands of years ago.",
            "Soap became cheap and common in the nineteenth century, when factories began to "
            "make it in large amounts.",
        ),
        "why": (
            "Washing hands with soap is one of the simplest ways to prevent the spread of "
            "disease.",
            "Soap helps keep skin, clothes and homes clean.",
        ),
        "fun": (
            "Bubbles form because soap lets a thin film of water stretch without breaking.",
            "Some bars of soap float because air is whipped into them.",
        ),
    }),
    "compost": ("compost", {
        "what": (
            "Compost is a dark, crumbly material made when plant waste and food scraps rot down.",
            "Gardeners mix compost into soil to help plants grow.",
        ),
        "how": (
            "Bacteria and fungi break down the waste in a compost heap.",
            "Worms and insects also help turn the material into compost.",
            "A good compost heap mixes green materials, such as vegetable peelings, with brown "
            "materials, such as dry leaves and cardboard.",
            "Turning a compost heap adds air, which helps the material break down faster.",
        ),
        "history": (
            "Farmers have composted manure and plant waste for thousands of years.",
            "Many towns now collect food waste separately and turn it into compost.",
        ),
        "why": (
            "Compost adds nutrients to soil and helps it hold water.",
            "Making compost keeps food scraps out of landfill, where they would release methane.",
        ),
        "fun": (
            "The middle of a compost heap can become warm as microbes work.",
            "Compost is usually ready to use after several months to a year.",
        ),
    }),
}  # fmt: skip

TOPIC_ASPECTS: dict[str, dict[str, tuple[str, ...]]] = {t: a for t, (_, a) in _TOPICS.items()}
TOPIC_KEYWORD: dict[str, str] = {t: k for t, (k, _) in _TOPICS.items()}
TOPIC_FACTS: dict[str, tuple[str, ...]] = {
    t: tuple(s for aspect in ASPECTS for s in a[aspect]) for t, a in TOPIC_ASPECTS.items()
}
TOPICS: tuple[str, ...] = tuple(sorted(_TOPICS))


def passage(
    rng: random.Random, topic: str | None = None, sentences: tuple[int, int] = (4, 7)
) -> tuple[str, str]:
    """A short factual passage: the topic's defining sentence, then a sample of its other
    sentences in aspect order.

    Args:
        rng: the random stream.
        topic: a key of `TOPIC_FACTS`; drawn at random when None.
        sentences: the (min, max) number of sentences, inclusive.

    Returns:
        (topic, passage text) where the text is one paragraph.
    """
    if topic is None:
        topic = rng.choice(TOPICS)
    if topic not in TOPIC_FACTS:
        raise ValueError(f"unknown topic {topic!r}; use one of {', '.join(TOPICS)}")
    facts = TOPIC_FACTS[topic]
    lo, hi = sentences
    if not 1 <= lo <= hi:
        raise ValueError(f"sentences must be (min, max) with 1 <= min <= max, got {sentences}")
    n = min(rng.randint(lo, hi), len(facts))
    rest = sorted(rng.sample(range(1, len(facts)), n - 1))
    return topic, " ".join([facts[0], *(facts[i] for i in rest)])
