"""Valuing usage: the price book and what a request cost (`price_book`), the shared list prices
from genai-prices (`list_prices`), and repricing stored records when a price or a rate changes
(`repricing`)."""
