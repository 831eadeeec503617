// Watched queries and the status stream, as Flows (filled in with the watch API).
val watchTests: List<Pair<String, () -> Unit>> = listOf()
