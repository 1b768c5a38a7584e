"""Reading real data into token ids: character text, word lists, CoNLL-U tagging, labelled sentences."""
