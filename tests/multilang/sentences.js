/**
 * Emits a fixed list of sentences reliably and replays the ones that fail: a spout written
 * to Storm's storm.js, in the style of storm-starter's randomsentence.js.
 */

var storm = require('./storm');
var Spout = storm.Spout;

var SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "four score and seven years ago"];

function SentenceSpout(sentences) {
    Spout.call(this);
    this.sentences = sentences;
    this.index = 0;
    this.replay = [];
};

SentenceSpout.prototype = Object.create(Spout.prototype);
SentenceSpout.prototype.constructor = SentenceSpout;

SentenceSpout.prototype.nextTuple = function(done) {
    var self = this;
    var id = null;
    if (this.replay.length > 0) {
        id = this.replay.shift();
    } else if (this.index < this.sentences.length) {
        id = this.index;
        this.index++;
    }
    if (id !== null) {
        var tup = [this.sentences[id]];
        this.emit({tuple: tup, id: id}, function(taskIds) {
            self.log(tup + ' sent to task ids - ' + taskIds);
        });
    }
    done();
}

SentenceSpout.prototype.activate = function(done) {
    this.log('activated');
    done();
}

SentenceSpout.prototype.deactivate = function(done) {
    this.log('deactivated');
    done();
}

SentenceSpout.prototype.ack = function(id, done) {
    this.log('acked ' + id);
    done();
}

SentenceSpout.prototype.fail = function(id, done) {
    this.log('failed ' + id + ', replaying it');
    this.replay.push(id);
    done();
}

new SentenceSpout(SENTENCES).run();
