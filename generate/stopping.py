"""Stop conditions on whole generated words: `--stop STRING` and `--until-sentence-end`.

Pure Python over the words a row has generated so far (the graph hands them over word by word,
`generate_continue`'s `words`), so a cut always falls between two words:

- a stop string is looked for in the generated text as printed (words joined by single spaces; the
  prompt is not searched). The output ENDS WITH THE WORD holding the match's last non-space
  character, the stop string kept. (OpenAI's API drops the stop string; dropping it here could cut
  a word in two — `--stop ca` on "cat" — and keeping it leaves every stopped output a prefix of the
  unstopped one with the same seed.) The earliest match over all stop strings wins.
- a word ends a sentence when its last character is one of SENTENCE_END. The tokenizer turns ASCII
  `.`, `!` and `?` into spaces (ingest/text.py PUNCTUATION), so a word vocabulary built by it holds
  such a word only for the scripts whose full stops are not ASCII (。 । ۔ ؟ ...): `gen` refuses
  `--until-sentence-end` for an export whose vocabulary holds none (`sentence_end_tokens`).
"""

from __future__ import annotations

# ASCII ends first (a vocabulary from another tokenizer may keep them), then the full stops and
# question marks of other scripts that NFKC_Casefold leaves as they are (fullwidth ！？ fold to ASCII).
SENTENCE_END = ".!?。।॥۔؟።፧᙮"


def ends_sentence(word: str) -> bool:
    return bool(word) and word[-1] in SENTENCE_END


def words_to_keep(words: list[str], new_from: int, stop: tuple[str, ...], until_sentence_end: bool) -> int | None:
    """How many of `words` (a row's generated words; those from index `new_from` arrived last) to keep
    because a stop condition was met in the new words, or None to go on. Earlier words were checked
    when they arrived, so a match must end in the new words."""
    cuts = []
    if until_sentence_end:
        cuts += [index + 1 for index in range(new_from, len(words)) if ends_sentence(words[index])][:1]
    if stop:
        text = " ".join(words)
        for string in stop:
            start = text.find(string)
            if start >= 0:
                last = start + len(string.rstrip(" ")) - 1  # the match's last non-space character
                # a match found only now ends in the new words, or (a stop string ending in a space)
                # in the last word before them, which the next word has just confirmed
                cuts.append(max(text.count(" ", 0, last) + 1, new_from))
    return min(cuts) if cuts else None


def sentence_end_tokens(vocabulary: list[str], suffix_indicator: str = "##") -> list[str]:
    """The tokens that can end a word that ends a sentence (a piece's "##" mark ignored)."""
    return [token for token in vocabulary if ends_sentence(token.removeprefix(suffix_indicator))]
