"""Write the small sample datasets that ship with the repository (deterministic; rerun to regenerate).

    python data/samples/make_samples.py            # rewrites natural-instructions/, mmlu/, tydiqa/ here

All content is written for this project (see README.md): simple, learnable tasks and easy general-knowledge
questions in the exact on-disk formats of SuperNI (natural-instructions), MMLU and TyDiQA GoldP, so the
pipeline runs end to end with no download. None of it is taken from the real benchmarks.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- natural-instructions (SuperNI)

COUNTRY_CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Finland", "Helsinki"), ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Greece", "Athens"), ("Ireland", "Dublin"),
    ("Netherlands", "Amsterdam"), ("Belgium", "Brussels"), ("Hungary", "Budapest"), ("Czechia", "Prague"),
    ("Romania", "Bucharest"), ("Ukraine", "Kyiv"), ("Russia", "Moscow"), ("Turkey", "Ankara"), ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"),
    ("Morocco", "Rabat"), ("Japan", "Tokyo"), ("China", "Beijing"), ("South Korea", "Seoul"), ("India", "New Delhi"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("Philippines", "Manila"),
    ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"), ("Canada", "Ottawa"), ("United States", "Washington, D.C."),
    ("Mexico", "Mexico City"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"),
    ("Peru", "Lima"), ("Colombia", "Bogota"), ("Cuba", "Havana"), ("Iceland", "Reykjavik"),
]

WORDS = """apple river garden window purple coffee planet summer winter silver forest island bridge candle
pencil rocket dragon guitar market yellow orange banana tomato kitten puppy castle butter doctor teacher mirror
circle square number letter summit valley ocean desert meadow thunder rainbow pillow blanket ladder basket
hammer engine wheel spring autumn breeze shadow sunset harbor lantern marble velvet violin trumpet piano
cookie muffin pepper garlic lemon cherry melon walnut turtle rabbit falcon salmon spider beetle monkey tiger
zebra camel parrot pirate wizard knight queen prince farmer sailor artist poet singer dancer runner captain
candy cloud dream flower glove honey jacket kettle needle pocket""".split()

REVIEW_SUBJECTS = ["The food", "The movie", "This phone", "The service", "The hotel room", "The book", "This game",
                   "The concert", "The coffee", "This laptop"]
POSITIVE = ["was wonderful", "was excellent", "was great fun", "exceeded my expectations", "was a real delight",
            "made me very happy", "was worth every penny", "was absolutely fantastic"]
NEGATIVE = ["was terrible", "was a waste of money", "was really disappointing", "made me angry",
            "was boring and slow", "broke after one day", "was the worst I have tried", "was awful"]


def _instance_id(task_number: int, text: str) -> str:
    return f"task{task_number:03d}-" + hashlib.md5(text.encode()).hexdigest()


def _task(number, name, definition, positives, negatives, pairs, categories, domains):
    """A task JSON in the natural-instructions schema; ``pairs`` are (input, output) tuples."""
    return {
        "Contributors": ["MoS sample data (synthetic, written for this project)"],
        "Source": ["synthetic"],
        "URL": [""],
        "Categories": categories,
        "Reasoning": [],
        "Definition": [definition],
        "Input_language": ["English"],
        "Output_language": ["English"],
        "Instruction_language": ["English"],
        "Domains": domains,
        "Positive Examples": [{"input": i, "output": o, "explanation": e} for i, o, e in positives],
        "Negative Examples": [{"input": i, "output": o, "explanation": e} for i, o, e in negatives],
        "Instances": [{"id": _instance_id(number, f"{name}|{k}|{i}"), "input": i, "output": [o]}
                      for k, (i, o) in enumerate(pairs)],
        "Instance License": ["Apache 2.0"],
    }


def make_natural_instructions(out: Path, rng: random.Random) -> None:
    tasks = {}
    tasks["task001_synthetic_country_capital"] = _task(
        1, "capital", "Given the name of a country, answer with the name of its capital city.",
        [("Finland", "Helsinki", "Helsinki is the capital of Finland."),
         ("Japan", "Tokyo", "Tokyo is the capital of Japan."),
         ("Kenya", "Nairobi", "Nairobi is the capital of Kenya.")],
        [("France", "Lyon", "Lyon is a city in France but not its capital.")],
        COUNTRY_CAPITALS, ["Question Answering"], ["Geography"])

    words = WORDS[:100]
    tasks["task002_synthetic_word_uppercase"] = _task(
        2, "upper", "Rewrite the given word using only uppercase letters.",
        [("house", "HOUSE", "Every letter is capitalized."), ("moon", "MOON", "Every letter is capitalized.")],
        [("tree", "Tree", "Only the first letter is capitalized.")],
        [(w, w.upper()) for w in words], ["Text Manipulation"], ["Words"])

    rev_words = words[5:95]
    tasks["task003_synthetic_word_reverse"] = _task(
        3, "reverse", "Reverse the order of the letters in the given word.",
        [("house", "esuoh", "The letters are written from last to first."),
         ("cat", "tac", "The letters are written from last to first.")],
        [("dog", "dog", "The word was not reversed.")],
        [(w, w[::-1]) for w in rev_words], ["Text Manipulation"], ["Words"])

    reviews = [(f"{s} {p}.", "positive") for s in REVIEW_SUBJECTS for p in POSITIVE[:4]]
    reviews += [(f"{s} {n}.", "negative") for s in REVIEW_SUBJECTS for n in NEGATIVE[:4]]
    rng.shuffle(reviews)
    tasks["task004_synthetic_review_sentiment"] = _task(
        4, "sentiment", "Classify the sentiment of the short review. Answer with \"positive\" or \"negative\".",
        [("The pizza was delicious.", "positive", "The reviewer liked the pizza."),
         ("The bus was late again.", "negative", "The reviewer is unhappy.")],
        [("The show was amazing.", "negative", "The review is positive, not negative.")],
        reviews, ["Sentiment Analysis"], ["Reviews"])

    largest = []
    for _ in range(60):
        options = rng.sample(range(1, 100), 4)
        largest.append((", ".join(map(str, options)), str(max(options))))
    tasks["task005_synthetic_largest_number"] = _task(
        5, "largest", "You are given a list of numbers separated by commas. Answer with the largest number.",
        [("3, 17, 9, 12", "17", "17 is larger than 3, 9 and 12."), ("40, 8, 61, 25", "61", "61 is the largest.")],
        [("5, 2, 8, 1", "1", "1 is the smallest number, not the largest.")],
        largest, ["Mathematics"], ["Numbers"])

    arithmetic = []
    for _ in range(70):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        if rng.random() < 0.5:
            arithmetic.append((f"What is {a} plus {b}?", str(a + b)))
        else:
            a, b = max(a, b), min(a, b)
            arithmetic.append((f"What is {a} minus {b}?", str(a - b)))
    tasks["task006_synthetic_simple_arithmetic"] = _task(
        6, "arith", "Answer the arithmetic question with a single number.",
        [("What is 2 plus 3?", "5", "2 + 3 = 5."), ("What is 10 minus 4?", "6", "10 - 4 = 6.")],
        [("What is 1 plus 1?", "11", "The digits were concatenated instead of added.")],
        arithmetic, ["Mathematics"], ["Numbers"])

    # A translated-MMLU-style task: listed in the split but skipped by the conversion (test leakage guard).
    mmmlu = [(f"Question {k}: which option is correct?\n(A) one (B) two (C) three (D) four", "B") for k in range(30)]
    tasks["task1001_mmmlu_answer_generation_synthetic_sample"] = _task(
        1001, "mmmlu", "Answer the multiple-choice question with the letter of the correct option.",
        [("Which number is even?\n(A) 1 (B) 2 (C) 3 (D) 5", "B", "2 is even."),
         ("Which is a color?\n(A) red (B) dog (C) run (D) six", "A", "Red is a color.")],
        [("Which number is even?\n(A) 1 (B) 2 (C) 3 (D) 5", "A", "1 is odd.")],
        mmmlu, ["Question Answering"], ["Multiple Choice"])

    (out / "tasks").mkdir(parents=True, exist_ok=True)
    (out / "splits" / "xlingual").mkdir(parents=True, exist_ok=True)
    for name, task in tasks.items():
        (out / "tasks" / f"{name}.json").write_text(json.dumps(task, indent=4, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
    names = list(tasks)
    train = names[:3] + [names[-1]] + names[3:-1]  # the _mmmlu_ task sits in the middle of the list
    (out / "splits" / "xlingual" / "train_tasks.txt").write_text("\n".join(train) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------- MMLU
# (question, correct answer, three wrong answers); the options are shuffled with a seeded generator.

MMLU = {
    "high_school_geography": [
        ("What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"]),
        ("Which is the largest ocean on Earth?", "The Pacific Ocean", ["The Atlantic Ocean", "The Indian Ocean", "The Arctic Ocean"]),
        ("On which continent is Egypt located?", "Africa", ["Asia", "Europe", "South America"]),
        ("Which river flows through London?", "The Thames", ["The Seine", "The Danube", "The Rhine"]),
        ("What is the longest river in Africa?", "The Nile", ["The Congo", "The Niger", "The Zambezi"]),
        ("Which country has the largest population in South America?", "Brazil", ["Argentina", "Peru", "Chile"]),
        ("What is the capital of Japan?", "Tokyo", ["Osaka", "Kyoto", "Sapporo"]),
        ("Which is the largest hot desert in the world?", "The Sahara", ["The Gobi", "The Kalahari", "The Atacama"]),
        ("Which mountain range is traditionally taken as a boundary between Europe and Asia?", "The Ural Mountains", ["The Alps", "The Andes", "The Rocky Mountains"]),
        ("The equator divides the Earth into which two halves?", "The Northern and Southern Hemispheres", ["The Eastern and Western Hemispheres", "The land and water hemispheres", "The Arctic and Antarctic regions"]),
        ("Which of these countries is landlocked?", "Switzerland", ["Italy", "Spain", "Portugal"]),
        ("What is the capital of Canada?", "Ottawa", ["Toronto", "Vancouver", "Montreal"]),
        ("Urbanization refers to", "the growing share of people living in cities", ["the movement of people from cities to farms", "the clearing of forests for agriculture", "the decline of birth rates in rural areas"]),
        ("Which line of longitude is the prime meridian?", "0 degrees", ["90 degrees", "180 degrees", "45 degrees"]),
        ("Which country lies partly in Europe and partly in Asia?", "Turkey", ["Greece", "Egypt", "Portugal"]),
        ("What is the largest country in the world by area?", "Russia", ["Canada", "China", "The United States"]),
        ("Which continent has the most countries?", "Africa", ["Asia", "Europe", "South America"]),
        ("Mount Kilimanjaro is located in which country?", "Tanzania", ["Kenya", "Uganda", "Ethiopia"]),
        ("Which is the smallest continent by area?", "Australia", ["Europe", "Antarctica", "South America"]),
        ("Which kind of map shows the height of the land with contour lines?", "A topographic map", ["A political map", "A climate map", "A population map"]),
    ],
    "elementary_mathematics": [
        ("What is 7 + 8?", "15", ["14", "16", "13"]),
        ("What is 9 x 6?", "54", ["56", "45", "63"]),
        ("What is 81 / 9?", "9", ["8", "7", "10"]),
        ("What is 100 - 37?", "63", ["73", "67", "53"]),
        ("Which fraction is equal to 1/2?", "2/4", ["1/3", "3/4", "2/3"]),
        ("What is 3/4 written as a decimal?", "0.75", ["0.34", "0.7", "0.25"]),
        ("How many sides does a hexagon have?", "6", ["5", "7", "8"]),
        ("What is 25% of 80?", "20", ["25", "16", "40"]),
        ("A rectangle is 5 cm long and 3 cm wide. What is its area?", "15 square centimeters", ["16 square centimeters", "8 square centimeters", "30 square centimeters"]),
        ("What is the next number in the pattern 2, 4, 6, 8, ...?", "10", ["9", "12", "16"]),
        ("Round 347 to the nearest hundred.", "300", ["350", "400", "340"]),
        ("How many minutes are in 2 hours?", "120", ["100", "60", "200"]),
        ("What is the value of 2^3?", "8", ["6", "9", "5"]),
        ("Which of these numbers is prime?", "13", ["15", "21", "27"]),
        ("What is 0.5 + 0.25?", "0.75", ["0.3", "0.55", "0.525"]),
        ("A triangle has angles of 90 degrees and 45 degrees. What is its third angle?", "45 degrees", ["90 degrees", "35 degrees", "60 degrees"]),
        ("What is 12 x 12?", "144", ["124", "142", "132"]),
        ("If x + 5 = 12, what is x?", "7", ["17", "5", "8"]),
        ("What is the perimeter of a square with sides of 4 m?", "16 m", ["8 m", "12 m", "20 m"]),
        ("How many centimeters are in one meter?", "100", ["10", "1000", "50"]),
    ],
    "world_religions": [
        ("Which religion's holy book is the Quran?", "Islam", ["Christianity", "Hinduism", "Buddhism"]),
        ("In which city is the Kaaba located?", "Mecca", ["Medina", "Jerusalem", "Cairo"]),
        ("The Torah is most central to which religion?", "Judaism", ["Sikhism", "Islam", "Jainism"]),
        ("Who is regarded as the founder of Buddhism?", "Siddhartha Gautama", ["Confucius", "Laozi", "Mahavira"]),
        ("Vatican City is the headquarters of which church?", "The Roman Catholic Church", ["The Anglican Church", "The Eastern Orthodox Church", "The Lutheran Church"]),
        ("Which religion was founded by Guru Nanak?", "Sikhism", ["Jainism", "Hinduism", "Zoroastrianism"]),
        ("What is the holy book of Sikhism?", "The Guru Granth Sahib", ["The Bhagavad Gita", "The Tripitaka", "The Avesta"]),
        ("Diwali, the festival of lights, is mainly celebrated by followers of which religion?", "Hinduism", ["Shinto", "Judaism", "Christianity"]),
        ("Which Christian holiday celebrates the resurrection of Jesus?", "Easter", ["Christmas", "Pentecost", "Epiphany"]),
        ("The Tao Te Ching is the main text of which tradition?", "Daoism", ["Confucianism", "Shinto", "Buddhism"]),
        ("What is the Jewish day of rest called?", "Shabbat", ["Ramadan", "Lent", "Vesak"]),
        ("During which month do Muslims fast from dawn to sunset?", "Ramadan", ["Shawwal", "Muharram", "Dhul Hijjah"]),
        ("Which religion is native to Japan and centers on the worship of kami?", "Shinto", ["Jainism", "Sikhism", "The Baha'i Faith"]),
        ("The Four Noble Truths are a core teaching of which religion?", "Buddhism", ["Hinduism", "Islam", "Christianity"]),
        ("What is the name of the Muslim pilgrimage to Mecca?", "Hajj", ["Zakat", "Salat", "Sawm"]),
        ("Which city is sacred to Judaism, Christianity and Islam?", "Jerusalem", ["Rome", "Varanasi", "Amritsar"]),
        ("The Bhagavad Gita is a sacred text of which religion?", "Hinduism", ["Buddhism", "Sikhism", "Islam"]),
        ("What is a Jewish house of worship called?", "A synagogue", ["A mosque", "A gurdwara", "A pagoda"]),
        ("Which religion, taught by Mahavira, stresses strict non-violence (ahimsa)?", "Jainism", ["Shinto", "Confucianism", "Zoroastrianism"]),
        ("Which festival commemorates the birth of Jesus?", "Christmas", ["Easter", "Passover", "Hanukkah"]),
    ],
    "nutrition": [
        ("Which vitamin does the skin make when exposed to sunlight?", "Vitamin D", ["Vitamin C", "Vitamin A", "Vitamin K"]),
        ("Which nutrient is the body's main source of energy?", "Carbohydrates", ["Vitamins", "Minerals", "Water"]),
        ("Scurvy is caused by a lack of which vitamin?", "Vitamin C", ["Vitamin B12", "Vitamin D", "Vitamin E"]),
        ("Which mineral is most important for strong bones and teeth?", "Calcium", ["Sodium", "Iron", "Zinc"]),
        ("Iron deficiency most commonly causes", "anemia", ["scurvy", "rickets", "goiter"]),
        ("Which of these foods is the best source of protein?", "Lentils", ["Apples", "White rice", "Lettuce"]),
        ("How many calories does one gram of fat provide?", "9", ["4", "7", "2"]),
        ("How many calories does one gram of protein provide?", "4", ["9", "7", "1"]),
        ("Which of these is a whole grain?", "Brown rice", ["White bread", "Sugar", "Butter"]),
        ("Dietary fiber is found mainly in", "plant foods", ["meat", "eggs", "milk"]),
        ("Which vitamin is found almost only in animal foods and is a concern for vegans?", "Vitamin B12", ["Vitamin C", "Folate", "Vitamin K"]),
        ("Iodine deficiency can cause", "goiter", ["scurvy", "night blindness", "rickets"]),
        ("Which type of fat is generally considered the healthiest?", "Unsaturated fat", ["Trans fat", "Saturated fat", "Hydrogenated fat"]),
        ("Carrots are rich in beta-carotene, which the body converts into", "vitamin A", ["vitamin C", "vitamin D", "iron"]),
        ("What is the main function of dietary protein?", "Building and repairing body tissues", ["Providing fiber", "Storing water", "Softening the bones"]),
        ("Which drink is best for everyday hydration?", "Water", ["Soda", "Energy drinks", "Coffee"]),
        ("Rickets in children is mainly caused by a lack of", "vitamin D", ["vitamin C", "iron", "fiber"]),
        ("Which food is high in vitamin C?", "Oranges", ["Bread", "Cheese", "Rice"]),
        ("A high sodium intake is most strongly linked to", "high blood pressure", ["anemia", "scurvy", "night blindness"]),
        ("Milk is a good source of", "calcium", ["fiber", "vitamin C", "iron"]),
    ],
    "high_school_computer_science": [
        ("How many bits are in a byte?", "8", ["4", "16", "10"]),
        ("What is the binary representation of the decimal number 5?", "101", ["110", "111", "100"]),
        ("Which data structure works on a last-in, first-out basis?", "A stack", ["A queue", "A linked list", "A tree"]),
        ("Which data structure works on a first-in, first-out basis?", "A queue", ["A stack", "A tree", "A graph"]),
        ("What does CPU stand for?", "Central Processing Unit", ["Computer Personal Unit", "Central Program Utility", "Control Processing Unit"]),
        ("Which of the following is a programming language?", "Python", ["Excel", "Windows", "Chrome"]),
        ("What is the time complexity of binary search on a sorted list of n elements?", "O(log n)", ["O(n)", "O(n^2)", "O(1)"]),
        ("Which logic gate outputs true only when both of its inputs are true?", "AND", ["OR", "XOR", "NOT"]),
        ("What is the decimal value of the binary number 1010?", "10", ["12", "8", "5"]),
        ("In most programming languages, what is the index of the first element of an array?", "0", ["1", "-1", "2"]),
        ("What does RAM stand for?", "Random Access Memory", ["Read Always Memory", "Rapid Application Module", "Remote Access Machine"]),
        ("Which sorting algorithm repeatedly swaps adjacent elements that are out of order?", "Bubble sort", ["Merge sort", "Quick sort", "Heap sort"]),
        ("What does HTML stand for?", "HyperText Markup Language", ["High Transfer Machine Language", "HyperTool Multi Language", "Home Text Making Language"]),
        ("What is the result of 7 % 3 (7 modulo 3)?", "1", ["2", "0", "3"]),
        ("Which of these is an operating system?", "Linux", ["Python", "Google", "Intel"]),
        ("What is the hexadecimal digit for the decimal number 15?", "F", ["E", "10", "1F"]),
        ("A loop whose condition never becomes false is called", "an infinite loop", ["a nested loop", "a for loop", "a recursive call"]),
        ("What does the Boolean expression (True or False) evaluate to?", "True", ["False", "None", "An error"]),
        ("What is a function that calls itself called?", "A recursive function", ["A lambda", "A constructor", "A loop"]),
        ("Which device connects a home network to the Internet?", "A router", ["A monitor", "A printer", "A keyboard"]),
    ],
}
MMLU_DEV_ROWS = 5


def make_mmlu(out: Path, rng: random.Random) -> None:
    for split in ("dev", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    for subject, items in MMLU.items():
        rows = []
        for question, correct, wrong in items:
            if len(wrong) != 3 or correct in wrong:
                raise ValueError(f"{subject}: {question!r} needs one correct and three different wrong answers")
            options = [correct, *wrong]
            rng.shuffle(options)
            rows.append([question, *options, "ABCD"[options.index(correct)]])
        for split, part in (("dev", rows[:MMLU_DEV_ROWS]), ("test", rows[MMLU_DEV_ROWS:])):
            with open(out / split / f"{subject}_{split}.csv", "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(part)  # headerless: question,A,B,C,D,answer


# ------------------------------------------------------------------------------------------------ TyDiQA
# language -> (dev passages, train passages); a passage is (title, context, [(question, answer), ...]) and
# every answer must occur verbatim in its context (answer_start is its first occurrence).

TYDIQA = {
    "english": (
        [
            ("Mount Everest", "Mount Everest is the highest mountain above sea level. It lies in the Himalayas on the "
             "border between Nepal and China, and its summit is 8,849 metres high.",
             [("How high is the summit of Mount Everest?", "8,849 metres"),
              ("Which countries does the border at Mount Everest separate?", "Nepal and China")]),
            ("Amazon River", "The Amazon River flows through South America. It carries more water than any other "
             "river and empties into the Atlantic Ocean.",
             [("Into which ocean does the Amazon River empty?", "the Atlantic Ocean")]),
            ("Marie Curie", "Marie Curie was a physicist and chemist who studied radioactivity. In 1903 she became the "
             "first woman to win a Nobel Prize.",
             [("In which year did Marie Curie first win a Nobel Prize?", "1903"),
              ("What did Marie Curie study?", "radioactivity")]),
            ("Pacific Ocean", "The Pacific Ocean is the largest and deepest ocean on Earth. Its deepest point is the "
             "Mariana Trench.",
             [("What is the deepest point of the Pacific Ocean?", "the Mariana Trench")]),
            ("Hamlet", "Hamlet is a tragedy written by William Shakespeare around 1600. It is set in Denmark.",
             [("Who wrote Hamlet?", "William Shakespeare"), ("Where is Hamlet set?", "Denmark")]),
            ("Telephone", "Alexander Graham Bell was granted a patent for the telephone in 1876.",
             [("Who was granted a patent for the telephone?", "Alexander Graham Bell")]),
            ("Canberra", "Canberra is the capital city of Australia. It was chosen as a compromise between Sydney "
             "and Melbourne.",
             [("What is the capital city of Australia?", "Canberra")]),
            ("Moon landing", "In July 1969 Neil Armstrong became the first person to walk on the Moon during the "
             "Apollo 11 mission.",
             [("Who was the first person to walk on the Moon?", "Neil Armstrong"),
              ("Which mission first landed people on the Moon?", "Apollo 11")]),
        ],
        [
            ("Paris", "Paris is the capital and largest city of France. The Seine river runs through it.",
             [("What is the capital of France?", "Paris")]),
            ("Honey bee", "A honey bee colony is led by a single queen, who lays all of the eggs.",
             [("Who lays the eggs in a honey bee colony?", "a single queen")]),
        ],
    ),
    "finnish": (
        [
            ("Helsinki", "Helsinki on Suomen pääkaupunki ja maan suurin kaupunki. Se sijaitsee Suomenlahden rannalla.",
             [("Mikä on Suomen pääkaupunki?", "Helsinki")]),
            ("Suomen itsenäisyys", "Suomi itsenäistyi vuonna 1917. Itsenäisyyspäivää vietetään joka vuosi "
             "6. joulukuuta.",
             [("Minä vuonna Suomi itsenäistyi?", "1917"), ("Milloin itsenäisyyspäivää vietetään?", "6. joulukuuta")]),
            ("Sauna", "Sauna on vanha suomalainen kylpyperinne. Suomessa on arviolta kolme miljoonaa saunaa.",
             [("Kuinka monta saunaa Suomessa on arviolta?", "kolme miljoonaa")]),
            ("Jean Sibelius", "Jean Sibelius oli suomalainen säveltäjä. Hänen tunnetuin teoksensa on Finlandia.",
             [("Mikä on Jean Sibeliuksen tunnetuin teos?", "Finlandia")]),
            ("Saimaa", "Saimaa on Suomen suurin järvi. Saimaalla elää harvinainen saimaannorppa.",
             [("Mikä on Suomen suurin järvi?", "Saimaa"), ("Mikä harvinainen eläin elää Saimaalla?", "saimaannorppa")]),
            ("Muumit", "Tove Jansson loi muumit, jotka ovat suosittuja satuhahmoja. Ensimmäinen muumikirja "
             "julkaistiin vuonna 1945.",
             [("Kuka loi muumit?", "Tove Jansson"), ("Milloin ensimmäinen muumikirja julkaistiin?", "vuonna 1945")]),
            ("Suomen kielet", "Suomen virallisia kieliä ovat suomi ja ruotsi.",
             [("Mitkä ovat Suomen viralliset kielet?", "suomi ja ruotsi")]),
            ("Lappi", "Lappi on Suomen pohjoisin maakunta. Sen pääkaupunki on Rovaniemi.",
             [("Mikä on Lapin pääkaupunki?", "Rovaniemi")]),
            ("Nokia", "Nokia on suomalainen yritys, joka perustettiin vuonna 1865.",
             [("Minä vuonna Nokia perustettiin?", "1865")]),
        ],
        [
            ("Turku", "Turku on Suomen vanhin kaupunki. Se sijaitsee Aurajoen suulla.",
             [("Mikä on Suomen vanhin kaupunki?", "Turku")]),
            ("Eduskunta", "Eduskunnassa on 200 kansanedustajaa, jotka valitaan neljäksi vuodeksi.",
             [("Montako kansanedustajaa eduskunnassa on?", "200")]),
        ],
    ),
    "indonesian": (
        [
            ("Jakarta", "Jakarta adalah ibu kota Indonesia dan kota terbesar di negara itu.",
             [("Apa ibu kota Indonesia?", "Jakarta")]),
            ("Kemerdekaan Indonesia", "Indonesia memproklamasikan kemerdekaannya pada tanggal 17 Agustus 1945.",
             [("Kapan Indonesia memproklamasikan kemerdekaannya?", "17 Agustus 1945")]),
            ("Borobudur", "Borobudur adalah candi Buddha terbesar di dunia. Candi ini terletak di Jawa Tengah.",
             [("Di mana Candi Borobudur terletak?", "Jawa Tengah")]),
            ("Bahasa Indonesia", "Bahasa resmi Republik Indonesia adalah bahasa Indonesia.",
             [("Apa bahasa resmi Republik Indonesia?", "bahasa Indonesia")]),
            ("Komodo", "Komodo adalah kadal terbesar di dunia. Hewan ini hidup di Pulau Komodo dan beberapa pulau "
             "di sekitarnya.",
             [("Apa kadal terbesar di dunia?", "Komodo"), ("Di pulau mana komodo hidup?", "Pulau Komodo")]),
            ("Kepulauan Indonesia", "Indonesia adalah negara kepulauan yang terdiri dari lebih dari 17.000 pulau.",
             [("Berapa banyak pulau di Indonesia?", "lebih dari 17.000 pulau")]),
            ("Puncak Jaya", "Puncak Jaya di Papua adalah gunung tertinggi di Indonesia.",
             [("Apa gunung tertinggi di Indonesia?", "Puncak Jaya")]),
            ("Rupiah", "Rupiah adalah mata uang resmi Indonesia.",
             [("Apa mata uang resmi Indonesia?", "Rupiah")]),
            ("Soekarno", "Soekarno adalah presiden pertama Indonesia. Ia menjabat dari tahun 1945 sampai 1967.",
             [("Siapa presiden pertama Indonesia?", "Soekarno")]),
        ],
        [
            ("Bali", "Bali adalah sebuah pulau yang terkenal dengan pantainya yang indah.",
             [("Pulau apa yang terkenal dengan pantainya yang indah?", "Bali")]),
            ("Danau Toba", "Danau Toba adalah danau vulkanik yang terletak di Sumatera Utara.",
             [("Di mana Danau Toba terletak?", "Sumatera Utara")]),
        ],
    ),
}


def _goldp(split: str, passages_by_lang: dict[str, list]) -> dict:
    data = []
    for lang, passages in passages_by_lang.items():
        for p_idx, (title, context, qas) in enumerate(passages):
            entries = []
            for q_idx, (question, answer) in enumerate(qas):
                start = context.find(answer)
                if start < 0:
                    raise ValueError(f"{lang}/{title}: answer {answer!r} does not occur in its context")
                number = int(hashlib.md5(f"{split}|{lang}|{p_idx}|{q_idx}".encode()).hexdigest()[:15], 16)
                entries.append({"id": f"{lang}-{number}-{q_idx}", "question": question,
                                "answers": [{"text": answer, "answer_start": start}]})
            data.append({"title": title, "paragraphs": [{"context": context, "qas": entries}]})
    return {"data": data, "version": f"TyDiQA-GoldP-1.1-{split} (synthetic sample)"}


def make_tydiqa(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split, which in (("dev", 0), ("train", 1)):
        doc = _goldp(split, {lang: parts[which] for lang, parts in TYDIQA.items()})
        (out / f"tydiqa-goldp-v1.1-{split}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                                              encoding="utf-8")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE, help="directory to write the samples to (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample generator (default: %(default)s)")
    args = ap.parse_args(argv)
    make_natural_instructions(args.out / "natural-instructions", random.Random(args.seed))
    make_mmlu(args.out / "mmlu", random.Random(args.seed + 1))
    make_tydiqa(args.out / "tydiqa")
    print(f"wrote samples under {args.out}")


if __name__ == "__main__":
    main()
