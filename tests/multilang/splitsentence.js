/**
 * Splits sentences into words: Storm's storm-starter splitsentence.js, plus a console.log
 * (stray output in the protocol stream) and an emitDirect for sentences starting "direct".
 */

var storm = require('./storm');
var BasicBolt = storm.BasicBolt;

function SplitSentenceBolt() {
    BasicBolt.call(this);
};

SplitSentenceBolt.prototype = Object.create(BasicBolt.prototype);
SplitSentenceBolt.prototype.constructor = SplitSentenceBolt;

SplitSentenceBolt.prototype.process = function(tup, done) {
    var self = this;
    console.log("splitting: " + tup.values[0]);
    var words = String(tup.values[0]).split(" ");
    if (words[0] === "direct") {
        self.emitDirect({tuple: [words[1]], task: parseInt(words[2]), anchorTupleId: tup.id});
        done();
        return;
    }
    words.forEach(function(word) {
        self.emit({tuple: [word], anchorTupleId: tup.id}, function(taskIds) {
            self.log(word + ' sent to task ids - ' + taskIds);
        });
    });
    done();
}

new SplitSentenceBolt().run();
