"""Upper-cases words, printing as it goes: a bolt written with Storm's own storm.py. Its
prints land in the protocol stream, which in Storm kills the bolt."""

import storm


class PrintingBolt(storm.BasicBolt):
    def process(self, tup):
        word = tup.values[0]
        print("processing", word)
        if word == "raise":
            raise RuntimeError("printing bolt cannot take 'raise'")
        if word == "levels":
            storm.logTrace("at trace")
            storm.logDebug("at debug")
            storm.logInfo("at info")
            storm.logWarn("at warn")
            storm.logError("at error")
        ids = storm.emit([word.upper()])
        storm.log(f"{word} went to tasks {ids}")


PrintingBolt().run()
